"""The version of mfjax (pyproject.toml holds the same; a test checks they agree)."""

__version__ = "0.3.0"
