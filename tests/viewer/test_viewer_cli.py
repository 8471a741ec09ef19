"""`instag preview` as a user runs it: prints the URL (loopback unless --host says otherwise, with a warning),
stops cleanly and at once on Ctrl-C or SIGTERM (also when started with SIGINT ignored), refuses a bad avatar in
one line; `instag bench preview`'s figures, with --live too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from instag.bench.browser import CHROMIUM
from instag.bench.preview import run as bench_preview
from instag.bench.preview_live import (
    HOP,
    capture_ms,
    onsets_in_file,
    sound_onsets,
    speech_amplitude,
    with_pauses,
)
from instag.bench.preview_live import run as bench_preview_live
from instag.bench.render import speech_like
from instag.viewer.live import RATE

REPO = Path(__file__).resolve().parents[2]
CODE = "import sys; from instag.cli.app import main; sys.argv[0] = 'instag'; main()"


def run_instag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CODE, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def start_preview(*args: str, **popen) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CODE, "preview", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "http://" in line:
            return proc, line.split("http://", 1)[1].split("/", 1)[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no URL printed: {proc.communicate()}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # no stray server left behind by a failing test
        proc.communicate()
        raise
    return proc.returncode, err


def test_cli_prints_a_loopback_url_and_stops_on_ctrl_c(tiny_avatar, speech_wav):
    proc, netloc = start_preview(tiny_avatar, "--audio", speech_wav, "--port", "0")
    try:
        assert netloc.startswith("127.0.0.1:")
        with urllib.request.urlopen(f"http://{netloc}/api/info", timeout=30) as r:
            assert b'"line.wav"' in r.read()
    finally:
        code, err = stop(proc)
    assert code == 130 and "warning" not in err


def test_cli_warns_when_listening_beyond_loopback(tiny_avatar):
    proc, netloc = start_preview(tiny_avatar, "--host", "0.0.0.0", "--port", "0")
    code, err = stop(proc)
    assert netloc.startswith("0.0.0.0:")
    assert "warning" in err and "0.0.0.0" in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_stops_at_once_even_when_started_with_sigint_ignored(tiny_avatar, tmp_path, sig, code):
    """A job started with `&` by a non-interactive shell (`make test &`) inherits SIGINT ignored, and Python keeps
    it so: Ctrl-C used to be lost and the server ran on. The signal comes right after the URL; exit includes
    stopping the server and removing its temporary directory."""
    proc, _ = start_preview(tiny_avatar, "--port", "0", env={**os.environ, "TMPDIR": str(tmp_path)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert stop(proc, sig, timeout=10)[0] == code
    assert not list(tmp_path.glob("instag-preview-*"))


def test_cli_refuses_a_bad_avatar_or_audio_in_one_line(tmp_path, tiny_avatar):
    r = run_instag("preview", tmp_path, "--port", "0")
    assert r.returncode == 2 and "not an avatar dir" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    r = run_instag("preview", tiny_avatar, "--audio", bad, "--port", "0")
    assert r.returncode == 2 and "notes.wav" in r.stderr and "Traceback" not in r.stderr


def test_bench_preview_reports_fps_latency_and_sync(tiny_avatar):
    doc = bench_preview(tiny_avatar, seconds=1.5, seeks=1)
    assert doc["benchmark"] == "preview" and doc["commit"] and doc["size"] == "64x64"
    p = doc["play"]
    assert p["fps_received"] > 5 and p["frames_shown"] > 0 and p["idle_fps"] > 5
    assert p["latency_ms_median"] is not None and p["latency_ms_median"] >= 0
    assert p["seek_ms_median"] > 0 and p["orbit_ms_median"] > 0
    assert 0 <= p["share_in_sync"] <= 1


def test_the_live_bench_finds_the_onsets_it_made():
    speech = speech_like(20.0, RATE)
    mic = with_pauses(speech, 12.0)
    assert len(mic) == 12 * RATE
    starts = np.nonzero(np.diff((np.abs(mic) > 0).astype(int)) == 1)[0] + 1  # where each piece begins
    onsets = sound_onsets(mic)
    assert len(onsets) == len(starts) >= 5
    assert np.all(np.abs(np.array(onsets) - starts) <= HOP), (onsets, starts)
    # Chunks of 160 samples that reached the page at 10 ms steps from t = 1000 ms.
    chunks = np.array([[160 * (k + 1), 1000.0 + 10 * k] for k in range(10)])
    assert capture_ms(chunks, 160) == pytest.approx(1000.0)
    assert capture_ms(chunks, 560) == pytest.approx(1030.0 - 80 / 16)  # in the chunk [480, 640) of 1030 ms


def test_the_live_mouths_amplitude_is_read_in_speech_frames_against_the_files():
    rng = np.random.default_rng(0)
    file = 0.3 + 0.1 * rng.standard_normal(200)
    live = 0.3 + 1.5 * (file - 0.3)
    voiced = np.arange(200) < 150
    live[150:] = 5.0  # silence: not counted
    live[:10] = np.nan  # no face found: not counted
    doc = speech_amplitude(live, file, voiced)
    assert doc["frames"] == 140 and doc["spread_ratio"] == pytest.approx(1.5)
    assert doc["live_median"] == pytest.approx(0.3 + 1.5 * (np.median(file[10:150]) - 0.3))
    assert doc["file_median"] == pytest.approx(np.median(file[10:150]))
    assert doc["live_p90"] > doc["file_p90"]
    assert speech_amplitude(live, file, np.arange(200) < 12) == {"frames": 2}


def test_the_dubs_own_delay_after_an_onset_is_found_and_taken_off_the_live_latency():
    fps, n_sound = 25.0, 10 * RATE
    file_open = np.zeros(250)
    file_open[53:60] = 1.0  # the onset at 2.1 s into the file: open from frame 53 (2.12 s), 20 ms later
    file_open[100:110] = 1.0  # open already in the frame the onset at 4.01 s falls in
    live = {"opening": {"closed_idle": 0.0, "open_p90_voiced": 1.0},
            # the captured stream starts 0.1 s into the file; the third onset's mouth never opens in the file
            "per_onset": [{"at_s": 2.0, "0.25": 200.0, "0.5": None}, {"at_s": 3.91, "0.25": 150.0, "0.5": 150.0},
                          {"at_s": 7.0, "0.25": 300.0, "0.5": 300.0}]}
    doc = onsets_in_file(file_open, fps, RATE // 10, n_sound, live)
    assert doc["0.25"]["file_ms"] == {"median": pytest.approx(10.0), "p95": pytest.approx(19.0), "n": 2}
    assert doc["0.25"]["live_less_file_ms"]["median"] == pytest.approx((180.0 + 150.0) / 2)
    assert doc["0.5"]["live_less_file_ms"] == {"median": 150.0, "p95": 150.0, "n": 1}  # the live mouth of the first never opened so far
    live["opening"]["open_p90_voiced"] = 0.0
    assert onsets_in_file(file_open, fps, RATE // 10, n_sound, live) == {}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make setup installs it)")
def test_bench_preview_live_runs_in_chromium(tiny_avatar):
    pytest.importorskip("playwright.sync_api")
    doc = bench_preview_live(tiny_avatar, seconds=6.0)
    assert doc["benchmark"] == "preview-live" and doc["uptime_before"] and doc["cpu"]["server"] > 0
    lv = doc["live"]
    assert lv["onsets"] >= 2 and lv["frames_drawn"] > 10 and lv["first_frame_ms"]["median"] > 0
    # The tiny avatar is not a face the tracker finds: no opening, so no lips latency, and it says so.
    assert lv["opening"]["tracked_share"] == 0
    assert all(v["n"] == 0 and v["missed"] == lv["onsets"] for v in lv["latency_ms"].values())
