"""Coverage-guided fuzz targets (atheris, libFuzzer) for the avatar and manifest loaders; tests/test_fuzz.py runs
each for a bounded time. Any input must give a result that keeps the loader's promises or one `InputError` line;
any other exception, or a crash in native code underneath (safetensors, numpy's zip reader, OpenCV's PNG decoder),
is a finding, which libFuzzer reports, saves as crash-*, and exits non-zero on.

    python tests/fuzz_loaders.py manifest WORKDIR [libFuzzer flags] CORPUS_DIR
    python tests/fuzz_loaders.py avatar WORKDIR [libFuzzer flags] CORPUS_DIR   (WORKDIR/avatar: a valid avatar)

For the avatar, an input's first byte picks the file it replaces (FILES) and the rest is its content, so a corpus
seeded with the valid files, each behind its index (as tests/test_fuzz.py does), mutates all of them.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import atheris
from hostile import assert_one_line, check_manifest

with atheris.instrument_imports(include=["instag"]):
    from instag.avatar.bundle import load_avatar
    from instag.avatar.dubbing import read_manifest  # noqa: F401  (imported here to be instrumented for check_manifest)
    from instag.errors import InputError

FILES = ("avatar.json", "drive.npz", "model.safetensors", "background.png")


def manifest_target(work: Path):
    path, out = work / "jobs.csv", work / "out"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        check_manifest(path, out)

    return one


def avatar_target(work: Path):
    avatar = work / "avatar"
    originals = {name: (avatar / name).read_bytes() for name in FILES}

    def one(data: bytes) -> None:
        if not data:
            return
        name = FILES[data[0] % len(FILES)]
        (avatar / name).write_bytes(data[1:])
        try:
            load_avatar(avatar)
        except InputError as exc:
            assert_one_line(exc)
        finally:
            (avatar / name).write_bytes(originals[name])

    return one


def main() -> None:
    target, work = sys.argv[1], Path(sys.argv[2])
    warnings.simplefilter("ignore")  # the kernels' backend fallback warning, once per run, is no finding
    one = {"manifest": manifest_target, "avatar": avatar_target}[target](work)
    atheris.Setup([sys.argv[0], *sys.argv[3:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
