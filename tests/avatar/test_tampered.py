"""Tampered avatar dirs through the CLI: every one is refused with one line naming the file and exit code 2,
before anything is rendered, and no temporary output is left behind."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from e2e.conftest import speech_like, tiny_avatar  # noqa: F401  (tiny_avatar is a fixture; tests/ is on sys.path)
from instag_testing import run_instag
from safetensors.torch import load_file, save_file


def edit_tensors(fn: Callable[[dict], None]) -> Callable[[Path], str]:
    def tamper(av: Path) -> str:
        t = load_file(str(av / "model.safetensors"))
        fn(t)
        save_file(t, str(av / "model.safetensors"))
        return "model.safetensors"
    return tamper


def edit_meta(fn: Callable[[dict], None]) -> Callable[[Path], str]:
    def tamper(av: Path) -> str:
        meta = json.loads((av / "avatar.json").read_text())
        fn(meta)
        (av / "avatar.json").write_text(json.dumps(meta))
        return "avatar.json"
    return tamper


def edit_drive(fn: Callable[[dict], None]) -> Callable[[Path], str]:
    def tamper(av: Path) -> str:
        with np.load(av / "drive.npz") as z:
            drive = {k: z[k] for k in z.files}
        fn(drive)
        np.savez(av / "drive.npz", **drive)
        return "drive.npz"
    return tamper


def _set(t: dict, key: str, value) -> None:
    t[key] = value


def _umf_triplane(meta: dict) -> dict:
    return meta["recipe"]["model"]["umf"]["triplane"]


def _broken_drive(av: Path) -> str:
    (av / "drive.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    return "drive.npz"


def fifo(name: str) -> Callable[[Path], str]:
    """The file replaced by a FIFO: opening it would wait for a writer forever."""
    def tamper(av: Path) -> str:
        (av / name).unlink()
        os.mkfifo(av / name)
        return name
    return tamper


TAMPERS = {
    "nan face means": edit_tensors(lambda t: t["face.means"].__setitem__((0, 0), float("nan"))),
    "inf motion weight": edit_tensors(lambda t: next(v for k, v in t.items() if k.startswith("motion.")
                                                     and v.is_floating_point()).view(-1).__setitem__(0, float("inf"))),
    "face means [N, 2]": edit_tensors(lambda t: _set(t, "face.means", t["face.means"][:, :2].contiguous())),
    "mouth opacities of another length": edit_tensors(
        lambda t: _set(t, "mouth.opacity_logits", torch.zeros(t["mouth.opacity_logits"].shape[0] + 3))),
    "no face opacities": edit_tensors(lambda t: t.pop("face.opacity_logits")),
    "sh degree 9": edit_tensors(lambda t: _set(t, "face.sh_rest", torch.zeros(t["face.means"].shape[0], 99, 3))),
    "log2_table_size 40": edit_meta(lambda m: _umf_triplane(m).__setitem__("log2_table_size", 40)),
    "log2_table_size 30": edit_meta(lambda m: _umf_triplane(m).__setitem__("log2_table_size", 30)),
    "hidden_dim -5": edit_meta(lambda m: m["recipe"]["model"]["umf"].__setitem__("hidden_dim", -5)),
    "hidden_dim 10**9": edit_meta(lambda m: m["recipe"]["model"]["umf"].__setitem__("hidden_dim", 10**9)),
    "fps 0": edit_meta(lambda m: _set(m, "fps", 0)),
    "fps nan": edit_meta(lambda m: _set(m, "fps", float("nan"))),
    "image size 10**6": edit_meta(lambda m: _set(m, "image_size", [10**6, 10**6])),
    "intrinsics missing": edit_meta(lambda m: m.pop("intrinsics")),
    "broken drive.npz": _broken_drive,
    "viewmats [T, 3]": edit_drive(lambda d: _set(d, "viewmats", d["viewmats"][:, 0, :3])),
    "no drive frames": edit_drive(lambda d: d.update({k: v[:0] for k, v in d.items() if k != "crop_box"})),
    "nan blink": edit_drive(lambda d: _set(d, "blink", np.full_like(d["blink"], np.nan))),
    "fifo background.png": fifo("background.png"),
    "fifo drive.npz": fifo("drive.npz"),
    "fifo model.safetensors": fifo("model.safetensors"),
    "fifo avatar.json": fifo("avatar.json"),
    "frame index past the torso frames": edit_drive(lambda d: _set(d, "frame_index", d["frame_index"] + 10**6)),
}


@pytest.fixture(scope="module")
def line_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tamper-audio") / "line.wav"
    soundfile.write(path, speech_like(0.3, 16000, 1), 16000)
    return path


def assert_one_line_exit_2(result, names: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and names in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", TAMPERS)
def test_render_refuses_a_tampered_avatar_in_one_line(tiny_avatar, line_wav, tmp_path, case):  # noqa: F811
    av = tmp_path / "avatar"
    shutil.copytree(tiny_avatar, av)
    name = TAMPERS[case](av)
    out = tmp_path / "out"
    result = run_instag("render", av, "--audio", line_wav, "-o", out)
    assert_one_line_exit_2(result, name)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
