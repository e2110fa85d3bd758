"""facecast runtime: torch-free. Networks run in Triton; this package talks to it."""

__version__ = "0.1.0"
