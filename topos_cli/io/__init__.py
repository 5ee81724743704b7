"""The edges: the only code that touches disk formats."""
