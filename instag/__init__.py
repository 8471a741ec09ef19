"""instag: audio-driven 3D Gaussian-splatting talking heads (InsTaG).

Importing the package is cheap: no kernels are built and no models are loaded here.
"""

__version__ = "0.1.0"
