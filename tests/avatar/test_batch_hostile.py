"""`instag render` under hostile batches: a NaN audio among good ones, outputs aimed outside -o, rich markup in
user strings, a zero-byte "finished" output, stale temporary files of killed runs, and SIGTERM mid-render."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from e2e.conftest import speech_like, tiny_avatar  # noqa: F401  (tiny_avatar is a fixture; tests/ is on sys.path)
from instag_testing import REPO, run_instag


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch-audio")
    good = speech_like(0.4, 16000, 1)
    bad = good.copy()
    bad[100:200] = np.nan
    files = {"a": root / "a.wav", "nan": root / "nan.wav", "c": root / "c.wav"}
    soundfile.write(files["a"], good, 16000)
    soundfile.write(files["nan"], bad, 16000, subtype="FLOAT")
    soundfile.write(files["c"], good, 16000)
    return files


def one_error_line(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-3000:]
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_a_nan_audio_fails_its_job_only(tiny_avatar, wavs, tmp_path):  # noqa: F811
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"{wavs['a']},a.mp4\n{wavs['nan']},nan.mp4\n{wavs['c']},c.mp4\n")
    out = tmp_path / "out"
    r = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", out)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "non-finite" in r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]


# Absolute outputs stay under the test's tmp dir: a run before the fix wrote them wherever they pointed.
@pytest.mark.parametrize("output", ["../x.mp4", "sub/../../x.mp4", "{tmp}/elsewhere/x", "{tmp}/elsewhere/x.mp4"])
def test_manifest_outputs_outside_the_output_dir_are_refused(tiny_avatar, wavs, tmp_path, output):  # noqa: F811
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"{wavs['a']},{output.format(tmp=tmp_path)}\n")
    r = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", tmp_path / "out")
    one_error_line(r, f"{manifest}:1", "outside")
    assert not list(tmp_path.rglob("x.mp4"))


def test_a_symlink_out_of_the_output_dir_is_refused(tiny_avatar, wavs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"{wavs['a']},link/x.mp4\n")
    one_error_line(run_instag("render", tiny_avatar, "--manifest", manifest, "-o", out), "outside")


def test_rich_markup_in_user_strings_is_shown_as_written(tiny_avatar, wavs, tmp_path):  # noqa: F811
    weird = tmp_path / "a[" / "y][bold]line.wav"  # the path reads …/a[/y][bold]line.wav
    weird.parent.mkdir()
    weird.write_bytes(wavs["a"].read_bytes())
    missing = tmp_path / "b[" / "x]gone.wav"  # …/b[/x]gone.wav, which does not exist
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"{weird},[bold]out.mp4\n{missing},[red]b.mp4\n")
    out = tmp_path / "out"
    r = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", out)
    assert r.returncode == 1 and "MarkupError" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "b[/x]gone.wav" in r.stdout + r.stderr.replace("\n", "")
    assert (out / "[bold]out.mp4").is_file()
    # And in the one-line error of a refused command.
    one_error_line(run_instag("render", tmp_path / "c[" / "z]no-avatar", "--audio", wavs["a"], "-o", out), "c[/z]")


def test_a_zero_byte_output_is_not_taken_as_done(tiny_avatar, wavs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"")
    r = run_instag("render", tiny_avatar, "--audio", wavs["a"], "-o", out)
    assert r.returncode == 0 and "skipped" not in r.stdout, r.stdout
    assert (out / "a.mp4").stat().st_size > 1000


def test_stale_temporary_outputs_of_dead_runs_are_swept(tiny_avatar, wavs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = out / f".a.mp4.{dead.pid}-k3j2.part.mp4"
    stale.write_bytes(b"half an mp4")
    live = out / f".a.mp4.{os.getpid()}-live.part.mp4"  # a run still going (this one) keeps its file
    live.write_bytes(b"")
    r = run_instag("render", tiny_avatar, "--audio", wavs["a"], "-o", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not stale.exists() and live.exists()


def test_sigterm_stops_a_render_like_ctrl_c_and_leaves_nothing(tiny_avatar, tmp_path):  # noqa: F811
    long = tmp_path / "long.wav"
    soundfile.write(long, speech_like(120.0, 16000, 1), 16000)
    out = tmp_path / "out"
    code = "import sys; from instag.cli.app import main; sys.argv[0] = 'instag'; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "render", str(tiny_avatar), "--audio", str(long), "-o",
                             str(out), "--threads", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".*.part.mp4")):
        time.sleep(0.1)
    assert list(out.glob(".*.part.mp4")), "the render never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (proc.returncode, err[-3000:])
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("case", ["-o is a file", "-o under a file", "--size 60000", "--size 0", "--size -3"])
def test_unusable_render_options_are_one_line_before_any_work(tiny_avatar, wavs, tmp_path, case):  # noqa: F811
    afile = tmp_path / "afile"
    afile.write_text("x")
    out, extra = tmp_path / "out", []
    if case == "-o is a file":
        out = afile
    elif case == "-o under a file":
        out = afile / "sub"
    else:
        extra = case.split()
    r = run_instag("render", tiny_avatar, "--audio", wavs["a"], "-o", out, *extra)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "failed" not in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["a directory", "under a file"])
def test_export_ply_to_an_unusable_path_is_one_line(tiny_avatar, tmp_path, case):  # noqa: F811
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    out = tmp_path / "adir" if case == "a directory" else tmp_path / "afile" / "x.ply"
    r = run_instag("export-ply", tiny_avatar, "-o", out)
    one_error_line(r, str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"] and not any((tmp_path / "adir").iterdir())
