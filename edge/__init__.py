"""ser-edge: speech emotion recognition on the Raspberry Pi."""

__version__ = "0.1.0"
