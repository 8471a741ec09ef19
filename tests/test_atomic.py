"""Atomic outputs: nothing half-written is ever left under the target name."""

import os
import subprocess
import sys

import pytest

from instag.atomic import atomic_dir, atomic_file, write_text_atomic
from instag.errors import InputError


def test_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out" / "a.txt"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(target.parent.iterdir()) == []
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole"


def test_dir_refuses_existing_unless_forced_and_cleans_up(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target) as tmp:
        (tmp / "meta.json").write_text("{}")
    assert (target / "meta.json").exists()
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(target, force=True) as tmp:
            (tmp / "new").write_text("x")
            raise RuntimeError("boom")
    assert (target / "meta.json").exists() and not (target / "new").exists()
    with atomic_dir(target, force=True) as tmp:
        (tmp / "new").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_force_replacing_a_file_with_a_dir_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "avatar"
    target.write_text("a file where the avatar dir goes")
    with atomic_dir(target, force=True) as tmp:
        (tmp / "avatar.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avatar"] and (target / "avatar.json").is_file()


def test_leftovers_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    """kill -9 mid-write leaves `.NAME.PID-XXXX.part[SUFFIX]`; the next write of NAME removes it unless PID runs."""
    dead = _dead_pid()
    stale_dir = tmp_path / f".ds.{dead}-ab12.part"
    stale_dir.mkdir()
    (stale_dir / "half.json").write_text("{")
    stale_file = tmp_path / f".a.mp4.{dead}-cd34.part.mp4"
    stale_file.write_bytes(b"half")
    live = tmp_path / f".a.mp4.{os.getpid()}-ef56.part.mp4"
    live.write_bytes(b"")
    other = tmp_path / f".b.mp4.{dead}-gh78.part.mp4"  # another target's: not this write's business
    other.write_bytes(b"")
    with atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "meta.json").write_text("{}")
    write_text_atomic(tmp_path / "a.mp4", "whole")
    assert not stale_dir.exists() and not stale_file.exists() and live.exists() and other.exists()
