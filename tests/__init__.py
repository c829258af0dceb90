"""The test suite: its folders mirror the package's (``tests/engine`` tests
``lazy_hasty/engine``, ``tests/experiments`` the drivers, ...)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository's root."""
