"""Static Gaussians of each branch: parameters, initialisation, densify/prune, PLY import/export."""

from instag.gaussians.field import DensifyReport, GaussianField, Region, quat_to_rotmat
from instag.gaussians.ply import read_ply, write_ply

__all__ = ["DensifyReport", "GaussianField", "Region", "quat_to_rotmat", "read_ply", "write_ply"]
