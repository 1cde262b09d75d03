"""The one place the version is written; packaging and the CLI read it."""

__version__ = "0.1.0"
