import pytest
import torch

from instag.config.model import GaussianConfig
from instag.errors import InputError
from instag.gaussians import GaussianField, read_ply, write_ply
from instag.gaussians.ply import ply_property_names


def _field(sh_degree: int) -> GaussianField:
    torch.manual_seed(sh_degree)
    field = GaussianField.from_points(
        torch.randn(23, 3), torch.rand(23, 3), GaussianConfig(sh_degree=sh_degree)
    )
    with torch.no_grad():
        for p in field.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return field


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_round_trip_gives_the_same_tensors(tmp_path, sh_degree):
    field = _field(sh_degree)
    path = tmp_path / "g.ply"
    write_ply(path, field)
    back = read_ply(path)
    assert back.sh_degree == sh_degree
    for name, value in field.named_parameters():
        assert torch.equal(getattr(back, name).detach(), value.detach()), name
    assert not list(tmp_path.glob(".*part*"))  # no temporary left behind


def test_header_matches_the_3dgs_layout(tmp_path):
    path = tmp_path / "g.ply"
    write_ply(path, _field(1))
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n")].decode().splitlines()
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 23"]
    names = [line.split()[2] for line in header[3:]]
    assert all(line.startswith("property float ") for line in header[3:])
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert names[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == ply_property_names(1)
    assert len(raw) == len(raw[: raw.index(b"end_header\n")]) + len(b"end_header\n") + 23 * len(names) * 4


def test_f_rest_is_channel_major(tmp_path):
    field = _field(1)
    with torch.no_grad():
        field.sh_rest.zero_()
        field.sh_rest[:, :, 1] = 7.0  # green coefficients only
    path = tmp_path / "g.ply"
    write_ply(path, field)
    import numpy as np

    raw = path.read_bytes()
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    names = ply_property_names(1)
    table = np.frombuffer(raw[start:], dtype="<f4").reshape(23, len(names))
    # In 3DGS order f_rest_0..2 are red, 3..5 green, 6..8 blue.
    assert (table[:, names.index("f_rest_3") : names.index("f_rest_6")] == 7.0).all()
    assert (table[:, names.index("f_rest_0") : names.index("f_rest_3")] == 0.0).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: raw.replace(b"binary_little_endian", b"ascii"), "binary_little_endian"),
        (lambda raw: raw.replace(b"property float opacity\n", b""), "opacity|bytes"),
        (lambda raw: raw[:-4], "bytes"),
        (lambda raw: b"nope" + raw, "not a PLY"),
        (lambda raw: raw.replace(b"property float f_rest_8\n", b""), "f_rest"),
    ],
)
def test_reader_validates(tmp_path, mutate, message):
    path = tmp_path / "g.ply"
    write_ply(path, _field(1))
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(InputError, match=message):
        read_ply(path)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_ply(tmp_path / "absent.ply")
