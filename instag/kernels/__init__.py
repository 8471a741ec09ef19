"""Public kernel ops; each picks a backend (cuda | cpu | torch) lazily, see `instag.kernels.backend`."""
