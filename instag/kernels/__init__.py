"""Public kernel ops; each picks a backend (cuda | cpu | torch) lazily, see `instag.kernels.backend`.

Importing this package builds nothing: the C++/CUDA libraries are built on an op's first use.
"""

from instag.kernels.backend import BackendFallbackWarning, resolve
from instag.kernels.hash_encode import HashEncoder3D, TriplaneHashEncoder
from instag.kernels.rasterize import RasterOutput, rasterize

__all__ = ["BackendFallbackWarning", "HashEncoder3D", "RasterOutput", "TriplaneHashEncoder", "rasterize", "resolve"]
