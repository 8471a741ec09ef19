"""Atomic outputs: write under a temporary name beside the target and rename when complete (DESIGN §7).

Temporary names are `.NAME.PID-XXXX.part[SUFFIX]`: the writer's process id tells a later run that one was left by a
process that is gone (kill -9, a crash, power loss), and every atomic write first sweeps such leftovers of its own
target, while another running process's work in progress stays.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from instag.errors import InputError


@contextlib.contextmanager
def atomic_file(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed.

    `suffix` keeps the extension tools infer the format from (e.g. ".mp4" for an encoder).
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(f"{target}: is a directory, not a file to write")
    _make_parent(target)
    sweep_stale(target)
    fd, tmp = _writable(target, tempfile.mkstemp, suffix=f".part{suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_file(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it becomes `target`.

    An existing `target` is refused unless `force`, in which case it is replaced only once the new one is
    complete. On error the temporary directory is removed and `target` is left as it was.
    """
    target = Path(target)
    if target.exists() and not force:
        raise InputError(f"{target}: already exists (pass --force to replace it)")
    _make_parent(target)
    sweep_stale(target)
    tmp = Path(_writable(target, tempfile.mkdtemp, suffix=".part"))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)  # a file too, when --force replaced one with a directory
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only or full disk
        raise InputError(f"{target}: cannot create its folder {target.parent} ({exc.strerror or exc})") from exc


def _writable(target: Path, make, suffix: str):
    """`make` (mkstemp / mkdtemp) of the temporary beside `target`; `InputError` where nothing can be written."""
    try:
        return make(prefix=f".{target.name}.{os.getpid()}-", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise InputError(f"{target}: cannot write in {target.parent} ({exc.strerror or exc})") from exc


def sweep_stale(target: Path) -> None:
    """Remove the temporary files and dirs of `target` (see the module doc) whose writing process is gone."""
    own = re.compile(rf"\.{re.escape(target.name)}\.(\d+)-[^/]*\.part(\.[^./]+)?")
    for path in target.parent.glob(glob.escape(f".{target.name}.") + "*.part*"):
        found = own.fullmatch(path.name)
        if found and not _running(int(found.group(1))):
            _remove(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
