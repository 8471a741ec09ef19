"""The preview page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): frames arrive,
the frame shown follows the audio clock, a drag re-renders from another viewpoint, uploads are checked, and a
screenshot (saved under artifacts/viewer/) shows a face distinct from the background."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from instag.bench.browser import CHROMIUM, chromium_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "viewer"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make setup installs it)")


@pytest.fixture
def page(tmp_path):
    pytest.importorskip("playwright.sync_api")
    with chromium_page(tmp_path / "profile") as page:
        yield page


def canvas_pixels(page) -> np.ndarray:
    url = page.evaluate("document.getElementById('view').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)


def preview_state(page) -> dict:
    return page.evaluate("({...window.instagPreview, clips: undefined})")


def test_page_plays_in_sync_orbits_and_shows_a_face(preview_server, page, tmp_path):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(preview_server.url)
    page.wait_for_function("window.instagPreview && window.instagPreview.connected && "
                           "window.instagPreview.receivedIdle > 2", timeout=30_000)
    fps = preview_state(page)["fps"]

    # Play: frames arrive and the one shown is the audio clock's, within a frame.
    page.click("#play")
    page.wait_for_function("window.instagPreview.shownMode === 'play' && window.instagPreview.receivedPlay > 5",
                           timeout=30_000)
    samples = []
    for _ in range(25):
        s = preview_state(page)
        if s["shownMode"] == "play":
            samples.append((s["audioTime"], s["clockIndex"], s["shownIndex"]))
        time.sleep(0.04)
    s = preview_state(page)
    assert len(samples) >= 15, samples
    times = [t for t, _, _ in samples]
    assert times[-1] - times[0] > 0.5, "the audio clock did not advance"
    shown = [i for _, _, i in samples]
    assert shown[-1] - shown[0] >= int(0.5 * fps) - 1, "the frames shown did not advance with the audio"
    for t, clock, idx in samples:
        assert clock == int(t * fps)
        assert 0 <= clock - idx <= 1, (t, clock, idx)
    assert s["maxSyncError"] <= 1
    assert s["latencyMs"] is not None and 0 <= s["latencyMs"] < 1000 / fps + 20
    assert int(page.inner_text("#fps")) > 0
    float(page.inner_text("#latency"))

    # Pause: back to the idle loop; a drag re-renders from another viewpoint (well beyond the idle loop's motion).
    page.click("#play")
    page.wait_for_function("window.instagPreview.shownMode === 'idle'", timeout=10_000)
    before = canvas_pixels(page)
    time.sleep(0.3)
    idle_change = np.abs(canvas_pixels(page) - before).mean()
    box = page.locator("#view").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rev = preview_state(page)["shownRev"]
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 90, y + 30, steps=6)
    page.mouse.up()
    page.wait_for_function(f"window.instagPreview.shownRev >= {rev + 6}", timeout=10_000)
    turned = canvas_pixels(page)
    drag_change = np.abs(turned - before).mean()
    assert drag_change > max(3 * idle_change, 4.0), (drag_change, idle_change)

    # Reset returns to the original viewpoint.
    page.click("#reset")
    page.wait_for_function(f"window.instagPreview.shownRev >= {rev + 7}", timeout=10_000)
    assert np.abs(canvas_pixels(page) - before).mean() < drag_change / 2

    # A face that differs from the background, saved as an artifact.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "preview-page.png"
    page.screenshot(path=str(shot))
    page.locator("#view").screenshot(path=str(ARTIFACTS / "preview-canvas.png"))
    print(f"screenshot: {shot}")
    img = cv2.imread(str(ARTIFACTS / "preview-canvas.png")).astype(np.float32)
    h, w = img.shape[:2]
    centre = img[int(h * 0.35):int(h * 0.6), int(w * 0.35):int(w * 0.65)].reshape(-1, 3).mean(0)
    corners = np.concatenate([img[:h // 8, :w // 8].reshape(-1, 3), img[:h // 8, -w // 8:].reshape(-1, 3)]).mean(0)
    assert np.abs(centre - corners).sum() > 60, (centre, corners)

    # Uploads are checked: a text file is refused with a clear message on the page.
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n" * 10)
    page.set_input_files("#upload", str(bogus))
    page.wait_for_function("document.getElementById('message').textContent.includes('not an audio file')",
                           timeout=10_000)
    assert not errors, errors
