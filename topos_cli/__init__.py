"""topos: industry-grade 3D heads under one fixed mesh topology."""

__version__ = "0.1.0"
