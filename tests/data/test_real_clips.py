"""Every real clip in ../shared/data/real (skipped without it) becomes a valid dataset at --size 256."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import real_data_dir, run_instag
from scipy.spatial.transform import Rotation

from instag.audio.features import energy_envelope
from instag.config.preprocess import PreprocessConfig
from instag.data import load_dataset, validate_dataset
from instag.data.labels import LABELS
from instag.data.preprocess import preprocess_clip

pytestmark = pytest.mark.real_data
SIZE = 256
CLIPS = sorted(p.name for p in real_data_dir().glob("*.mp4")) if real_data_dir() else ["(no real clips)"]
CLI_CLIP = "yerfor_Real3DPortrait_May_5s.mp4"  # this one goes through the CLI, with a tiny HuBERT as well


@pytest.fixture(scope="module")
def datasets(real_data, tmp_path_factory, request):
    """Preprocess each clip once (lazily, on first use) and hand out the dataset dirs."""
    root = tmp_path_factory.mktemp("real")
    made: dict[str, object] = {}

    def get(name: str):
        if name not in made:
            out = root / name.removesuffix(".mp4")
            if name == CLI_CLIP:
                hubert = request.getfixturevalue("tiny_hubert_dir")
                res = run_instag("preprocess", real_data / name, "-o", out, "--size", SIZE, "--test-from", "4",
                                 "--audio-features", "mel", "--audio-features", "hubert", "--audio-model", hubert)
                assert res.returncode == 0, res.stderr
            else:
                preprocess_clip(real_data / name, out, PreprocessConfig(size=SIZE))
            made[name] = load_dataset(out)
        return made[name]

    return get


@pytest.fixture(scope="module")
def tiny_hubert_dir(tmp_path_factory):
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                       conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    path = tmp_path_factory.mktemp("hubert")
    HubertModel(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("name", CLIPS)
def test_clip_becomes_valid_dataset(datasets, name):
    ds = datasets(name)
    validate_dataset(ds)
    assert ds.size == SIZE and ds.frame(0).shape == (SIZE, SIZE, 3)
    src = ds.meta["source"]
    assert ds.n_frames == int(src["duration_s"] * 25 + 1e-6)  # constant 25 fps, whatever the source rate
    assert ds.meta["tracking"]["face_found_fraction"] >= 0.95


@pytest.mark.parametrize("name", CLIPS)
def test_smoothed_pose_has_no_jitter(datasets, name):
    """Jitter = change of the frame-to-frame rotation between consecutive frames (deg / frame²).

    Bound: per-frame PnP on landmarks with ~1 px noise on a ~100 px face wobbles by about a degree per frame;
    the zero-phase 4 Hz low-pass removes that. Real head motion in these clips (turns of up to 35° within a
    second) keeps the typical (median) change below 0.6° and the 95th percentile below 2.5° (≈1500 °/s² at
    25 fps, beyond natural head acceleration while talking)."""
    ds = datasets(name)
    rot = Rotation.from_matrix(ds.tracks["viewmats"][:, :3, :3].astype(np.float64))
    omega = (rot[1:] * rot[:-1].inv()).as_rotvec()
    jitter = np.degrees(np.linalg.norm(np.diff(omega, axis=0), axis=1))
    assert np.median(jitter) < 0.6
    assert np.percentile(jitter, 95) < 2.5


@pytest.mark.parametrize("name", CLIPS)
def test_mouth_interior_labelled_when_open(datasets, name):
    ds = datasets(name)
    mouth = ds.tracks["mouth_open"]
    open_frames = np.flatnonzero(mouth > 0.15)  # inner-lip gap above 15 % of the eye-corner distance
    for i in open_frames[:: max(1, len(open_frames) // 10)]:
        assert (ds.label(i) == LABELS["mouth_interior"]).sum() >= 20, f"frame {i}"


def test_mouth_opening_follows_speech_energy(datasets):
    """The clip whose speech pauses (it fills ~46 % of it) shows the relation; continuous talkers keep the
    energy high through mouth closures, so a clip-level correlation says little about them."""
    ds = datasets("OpenTalker_video-retalking_1.mp4")
    audio, sr = ds.audio()
    env = energy_envelope(audio, sr, ds.fps, ds.n_frames)
    assert np.corrcoef(ds.tracks["mouth_open"], env)[0, 1] > 0.3


def test_cli_dataset_split_features_and_inspect(datasets, real_data, tmp_path):
    ds = datasets(CLI_CLIP)
    assert ds.meta["split"] == {"train": [0, 100], "test": [100, 125]}
    assert ds.audio_features("hubert").shape == (125, 2, 32)
    assert ds.audio_features("mel").shape == (125, 4, 80)
    meta = json.loads((ds.path / "meta.json").read_text())
    assert meta["source"]["sha256"][:16] == "947610a55bf6c680"
    sheet = tmp_path / "sheet.png"
    res = run_instag("inspect", ds.path, "-o", sheet)
    assert res.returncode == 0, res.stderr
    import cv2

    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 800 and img.shape[1] >= 1024


def test_depth_prior_matches_camera_model(datasets):
    """The depth prior, lifted through meta.json intrinsics and the viewmat, lands on the tracked face shape."""
    ds = datasets(CLI_CLIP)
    i = 40
    depth = ds.depth(i)
    lm = ds.tracks["landmarks"][i]
    k = ds.intrinsics
    view = ds.tracks["viewmats"][i].astype(np.float64)
    verts, _ = ds.face_mesh()
    cam = verts.astype(np.float64) @ view[:3, :3].T + view[:3, 3]
    nose = 4  # just above the nose tip: visible and inside the mesh
    x, y = lm[nose]
    d = depth[int(y), int(x)]
    assert d > 0
    assert abs(d - cam[nose, 2]) < 0.01  # within 1 cm of the fitted shape at that point
    proj = (cam @ k.T)[:, :2] / cam[:, 2:3]
    assert np.median(np.linalg.norm(proj[:468] - lm[:468], axis=1)) < 0.03 * SIZE
