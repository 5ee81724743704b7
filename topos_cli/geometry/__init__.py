"""Pure numpy/torch geometry on (V, 3) arrays: no paths, no global RNG, no printing."""
