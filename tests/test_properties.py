"""Property-based tests (hypothesis) of the loaders whose input space is too large for hand-picked cases: the
manifest parser, the preview's stream messages, avatar.json and the UMF description. Any generated input gives
either a result that keeps the loader's promises or the project's one-line error (`InputError`; for a stream
message the ValueError the server answers with), never another exception. Examples are bounded and derandomized,
so a run is repeatable and takes seconds; the seeded mutation suites are in tests/test_adversarial.py."""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import tiny_avatar  # noqa: F401  (a fixture; tests/ is on sys.path)
from hostile import assert_one_line, check_manifest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from instag_testing import tiny_model_config

from instag.avatar.bundle import load_avatar
from instag.errors import InputError
from instag.motion.umf_file import shipped_umf, umf_paths
from instag.train.umf import choose_umf, with_umf_sizes
from instag.viewer.server import MAX_CLOCK_S, MAX_NUMBER, parse_message

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# JSON values of every kind, hostile numbers included (10**400 is valid JSON; NaN and Infinity are what Python's
# json module writes and reads by default).
NUMBERS = (st.integers() | st.integers(min_value=-(10**400), max_value=10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0, -1, 2**31, 2**63, 1e308, -0.0]))
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


# --- manifest -------------------------------------------------------------------------------------------------

CELLS = st.sampled_from([
    "", " ", "a.wav", "sub/b.flac", "de.mp4", "fr/x", "c", "../x.mp4", "../../etc/x", "/etc/cron.d/x", "/tmp/x.mp4",
    ".", "..", "./", "x/../../y", "#comment", "audio", "output", "1", "0", "yes", "no", "maybe", "[/y]", "[bold]",
    "a" * 300, "é.wav", "x\x00y", "\u202eevil", "\\..\\x", "~/x.mp4", "x.MP4", "x.mp4.mp4", '"quoted"', "a,b",
]) | st.text(max_size=16)
ROWS = st.lists(st.lists(CELLS, min_size=0, max_size=4), min_size=0, max_size=6)


def manifest_bytes(rows: list[list[str]], newline: str, bom: bool) -> bytes:
    text = newline.join(",".join(row) for row in rows)
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass")


def check_manifest_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.csv"
        path.write_bytes(data)
        check_manifest(path, Path(tmp) / "out")


@PROPERTY
@given(rows=ROWS, newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans())
@example(rows=[["a.wav", "x\x00y"]], newline="\n", bom=False)  # a ValueError from the OS before the fix
@example(rows=[["a\x00.wav", "x"]], newline="\n", bom=False)
@example(rows=[["a.wav", "/"]], newline="\n", bom=False)  # found by tests/test_fuzz.py: the root has no name
def test_generated_manifests_give_confined_jobs_or_one_line(rows, newline, bom):
    check_manifest_bytes(manifest_bytes(rows, newline, bom))


@PROPERTY
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_as_a_manifest_give_jobs_or_one_line(data):
    check_manifest_bytes(data)


# --- stream messages ------------------------------------------------------------------------------------------

KEYS = ("type", "clip", "playing", "running", "t", "epoch", "rev", "yaw", "pitch", "zoom")
MESSAGES = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON, max_size=8).map(
    lambda d: d | ({"type": "state"} if "type" not in d or len(d) % 2 else {}))


def check_message(text: str) -> None:
    try:
        state = parse_message(text, lambda clip: clip == "known", now=5.0)
    except ValueError as exc:
        assert_one_line(exc)
        return
    assert state.clip in (None, "known")
    assert 0.0 <= state.t <= MAX_CLOCK_S
    for value in (state.epoch, state.rev):
        assert isinstance(value, int) and abs(value) <= MAX_NUMBER
    for value in (state.orbit.yaw, state.orbit.pitch, state.orbit.zoom):
        assert math.isfinite(value)


@PROPERTY
@given(msg=MESSAGES)
def test_generated_stream_messages_give_a_state_or_an_error(msg):
    check_message(json.dumps(msg))


@PROPERTY
@given(text=st.text(max_size=60) | JSON.map(json.dumps))
def test_arbitrary_text_as_a_stream_message_gives_a_state_or_an_error(text):
    check_message(text)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"type": "state", "t": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  "", "null", "\x00", '{"type": "state", "t": 1e999}', '"state"'])
def test_pathological_stream_messages_give_an_error(text):
    check_message(text)


# --- avatar.json and the UMF description: seeded by a valid document, then parts replaced or removed ----------


def paths_in(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON document (the root included)."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += paths_in(value, (*prefix, i))
    return found


@st.composite
def mutated(draw, valid: dict) -> Any:
    """`valid` with one to three parts (chosen among all its key paths) replaced by any JSON value or removed."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_in(doc)
        path = draw(st.sampled_from(paths))
        value = draw(JSON | st.sampled_from([-5, 0, 40, 10**9, 2**31, 1e30, math.nan, math.inf, "x", [], {}]))
        if not path:
            doc = value
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return doc


def write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def avatar_copy(request, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the tiny avatar whose avatar.json each example overwrites, and the valid document."""
    source = request.getfixturevalue("tiny_avatar")
    copy_dir = tmp_path_factory.mktemp("prop-avatar") / "avatar"
    shutil.copytree(source, copy_dir)
    return copy_dir, json.loads((source / "avatar.json").read_text())


@PROPERTY
@given(data=st.data())
def test_mutated_avatar_json_loads_or_gives_one_line(avatar_copy, data):
    avatar, valid = avatar_copy
    doc = data.draw(mutated(valid))
    write_json(avatar / "avatar.json", doc)
    try:
        loaded = load_avatar(avatar)
    except InputError as exc:
        assert_one_line(exc)
        return
    assert loaded.cfg is not None and math.isfinite(float(loaded.meta["fps"]))


@pytest.fixture(scope="module")
def umf_copy(tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the shipped Whisper UMF whose description each example overwrites, and the valid description."""
    stem = shipped_umf("whisper")
    assert stem is not None
    st_path, json_path = umf_paths(stem)
    copy_stem = tmp_path_factory.mktemp("prop-umf") / "umf"
    shutil.copy(st_path, umf_paths(copy_stem)[0])
    return copy_stem, json.loads(json_path.read_text())


@PROPERTY
@given(data=st.data())
def test_mutated_umf_descriptions_give_sizes_or_one_line(umf_copy, data):
    stem, valid = umf_copy
    doc = data.draw(mutated(valid))
    write_json(umf_paths(stem)[1], doc)
    cfg = tiny_model_config()
    for step in (lambda: choose_umf(stem, True, cfg, "whisper"), lambda: with_umf_sizes(cfg, stem)):
        try:
            result = step()
        except InputError as exc:
            assert_one_line(exc)
            continue
        assert result is not None
