"""A standing adversarial suite: generated broken inputs for the loaders a user's files reach (manifest, dataset,
upload, stream message) must give one clear line (an `InputError`, exit 2) or the HTTP / WebSocket equivalent,
never a traceback, a 500 or a stream that stops. Inputs come from seeded mutations of valid ones (`mutate`), so a
failure reproduces. Elsewhere: tampered avatars in tests/avatar/test_tampered.py, hostile batches in
tests/avatar/test_batch_hostile.py, hostile audio in tests/media, uploads and stream messages in
tests/viewer/test_hostile_input.py."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hostile import assert_one_line, check_manifest, mutate

from instag.data.dataset import load_dataset, validate_dataset
from instag.errors import InputError
from instag.train.synthetic import write_dataset

N_CASES = 40


@pytest.mark.parametrize("seed", range(N_CASES))
def test_mutated_manifests_give_jobs_inside_the_output_dir_or_one_line(tmp_path, seed):
    rng = random.Random(seed)
    valid = b"audio,output,paste_back,voice_rest\na.wav,de.mp4,1\nsub/b.flac,fr/x.mp4,no,0\nc.m4a,c\n"
    path = tmp_path / "jobs.csv"
    path.write_bytes(mutate(valid, rng))
    check_manifest(path, tmp_path / "out")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("adv-ds") / "ds", size=16, frames=4)


@pytest.mark.parametrize("seed", range(N_CASES))
def test_mutated_datasets_load_or_give_one_line(dataset, tmp_path, seed):
    rng = random.Random(seed)
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    files = sorted(p for p in ds.rglob("*") if p.is_file())
    victim = rng.choice([ds / "meta.json", ds / "tracks.npz", rng.choice(files)])
    victim.write_bytes(mutate(victim.read_bytes(), rng))
    try:
        validate_dataset(load_dataset(ds))
    except InputError as exc:
        assert_one_line(exc)
