"""The package version, in one place (the lazy face and the stages read it from here)."""

__version__ = "0.1.0"
