"""Shared test fixtures."""

import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test with 64-bit floats, restoring the default afterwards."""
    with jax.enable_x64(True):
        yield
