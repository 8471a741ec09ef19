"""Gaussians to and from PLY in the layout of the original 3DGS code, which other 3DGS viewers read.

One `vertex` element, binary little-endian float32 properties in this order:
x, y, z, nx, ny, nz (always 0), f_dc_0..2, f_rest_0..(3*(K-1)-1), opacity (logit), scale_0..2 (log),
rot_0..3 (w, x, y, z, unnormalised). f_rest is channel-major: all red coefficients, then green, then blue.
The reader finds properties by name (other writers order or omit normals differently) and refuses anything
it cannot map onto that layout with an `InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from instag.atomic import atomic_file
from instag.errors import InputError
from instag.gaussians.field import GaussianField
from instag.gaussians.sh import MAX_SH_DEGREE, num_sh_coeffs

MAX_HEADER_BYTES = 1 << 16  # a 3DGS header is ~1.5 KB; anything far longer is not one


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names, in file order, for Gaussians of `sh_degree`."""
    n_rest = 3 * (num_sh_coeffs(sh_degree) - 1)
    return [
        "x", "y", "z", "nx", "ny", "nz",
        *[f"f_dc_{i}" for i in range(3)],
        *[f"f_rest_{i}" for i in range(n_rest)],
        "opacity",
        *[f"scale_{i}" for i in range(3)],
        *[f"rot_{i}" for i in range(4)],
    ]  # fmt: skip


def ply_header(num_gaussians: int, sh_degree: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {num_gaussians}"]
    lines += [f"property float {name}" for name in ply_property_names(sh_degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(path: str | Path, field: GaussianField) -> None:
    """Write `field` to `path` atomically (temporary name, renamed when complete)."""
    n = field.num_gaussians
    with torch.no_grad():
        # [N, K-1, 3] → [N, 3, K-1] so the file lists each channel's coefficients together (3DGS order).
        rest = field.sh_rest.detach().transpose(1, 2).reshape(n, -1)
        columns = [
            field.means.detach(),
            torch.zeros(n, 3),
            field.sh_dc.detach(),
            rest,
            field.opacity_logits.detach().unsqueeze(1),
            field.log_scales.detach(),
            field.quats.detach(),
        ]
        data = torch.cat([c.float().cpu() for c in columns], dim=1).numpy().astype("<f4")
    with atomic_file(path, suffix=".ply") as tmp:
        with open(tmp, "wb") as f:
            f.write(ply_header(n, field.sh_degree))
            f.write(data.tobytes())


def _parse_header(path: Path, raw: bytes) -> tuple[int, list[str], int]:
    """(vertex count, property names in order, byte offset of the data) or an `InputError`."""
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise InputError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()[1:]
    count, names, seen_format = None, [], False
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if words[1:] != ["binary_little_endian", "1.0"]:
                raise InputError(
                    f"{path}: PLY format {' '.join(words[1:])!r} is not binary_little_endian 1.0"
                )
            seen_format = True
        elif words[0] == "element":
            if words[1] != "vertex" or count is not None:
                raise InputError(
                    f"{path}: unexpected PLY element {words[1]!r}; a Gaussian PLY has one 'vertex'"
                )
            count = int(words[2])
        elif words[0] == "property":
            if count is None or len(words) != 3 or words[1] not in ("float", "float32"):
                raise InputError(f"{path}: property {' '.join(words[1:])!r} is not a float vertex property")
            names.append(words[2])
        else:
            raise InputError(f"{path}: unknown PLY header line {line!r}")
    if not seen_format or count is None:
        raise InputError(f"{path}: PLY header lacks a format or a vertex element")
    return count, names, end + len(b"end_header\n")


def read_ply(path: str | Path) -> GaussianField:
    """Load a 3DGS PLY written by `write_ply` or another 3DGS tool; a malformed file is an `InputError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        count, names, offset = _parse_header(path, raw[:MAX_HEADER_BYTES])
    except (IndexError, ValueError) as exc:
        raise InputError(f"{path}: malformed PLY header ({exc})") from exc
    n_rest = sum(name.startswith("f_rest_") for name in names)
    degree = next((d for d in range(MAX_SH_DEGREE + 1) if 3 * (num_sh_coeffs(d) - 1) == n_rest), None)
    if degree is None:
        raise InputError(f"{path}: {n_rest} f_rest properties do not match any SH degree 0..{MAX_SH_DEGREE}")
    required = [name for name in ply_property_names(degree) if name not in ("nx", "ny", "nz")]
    missing = [name for name in required if name not in names]
    if missing or len(set(names)) != len(names):
        raise InputError(
            f"{path}: PLY vertex properties lack {', '.join(missing) or 'nothing'} or repeat a name"
        )
    expected = offset + count * len(names) * 4
    if len(raw) != expected:
        raise InputError(f"{path}: {len(raw)} bytes, expected {expected} for {count} Gaussians")
    table = np.frombuffer(raw, dtype="<f4", count=count * len(names), offset=offset).reshape(
        count, len(names)
    )
    column = {name: i for i, name in enumerate(names)}

    def take(*cols: str) -> torch.Tensor:
        return torch.from_numpy(table[:, [column[c] for c in cols]].astype(np.float32))

    rest_names = [f"f_rest_{i}" for i in range(n_rest)]
    tensors = {
        "means": take("x", "y", "z"),
        "sh_dc": take("f_dc_0", "f_dc_1", "f_dc_2"),
        "sh_rest": take(*rest_names).reshape(count, 3, -1).transpose(1, 2).contiguous(),
        "opacity_logits": take("opacity").squeeze(1),
        "log_scales": take("scale_0", "scale_1", "scale_2"),
        "quats": take("rot_0", "rot_1", "rot_2", "rot_3"),
    }
    return GaussianField.from_tensors(tensors)
