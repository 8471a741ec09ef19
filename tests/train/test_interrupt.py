"""Ctrl-C during `instag adapt`: a checkpoint is saved and the command exits cleanly (130). The run is far too
long to end before the signal arrives, so the test does not depend on timing; resuming a stopped run is
`tests/train/test_adapt.py`'s."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from instag.train import checkpoint as ck
from instag.train.synthetic import TINY_RECIPE, write_dataset

BIN = Path(sys.executable).parent


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE,
                                      "stages": {"warmup": 10**7, "align": 0, "fuse": 1},
                                      "run": {"checkpoint_every": 0, "log_every": 1, "threads": 1}}))
    av = tmp_path / "av"
    proc = subprocess.Popen([str(BIN / "instag"), "adapt", str(ds), "-o", str(av), "--recipe", str(recipe)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "av.run" / "losses.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) > 3):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    ckpts = ck.list_checkpoints(tmp_path / "av.run")
    assert len(ckpts) == 1 and not av.exists()
    _, state = ck.load_checkpoint(ckpts[0])
    assert state["step"] >= 3

