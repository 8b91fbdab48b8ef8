"""Trygg: welfare-technology home gateway and response centre."""

__version__ = "0.1.0"
