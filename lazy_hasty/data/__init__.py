"""Datasets and example groups."""
