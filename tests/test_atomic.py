"""Atomic outputs: nothing half-written is ever left under the target name."""

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
