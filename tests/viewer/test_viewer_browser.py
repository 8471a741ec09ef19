"""The preview page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): frames arrive,
the frame shown follows the audio clock, a drag turns the view within the avatar's range and eases back, uploads
are checked, and a screenshot (saved under artifacts/viewer/) shows a face distinct from the background. With a
sound file as Chromium's fake microphone: the lips move while it speaks and are shut in its silences, one page
holds the microphone, and the WebSocket cuts off oversized and malformed audio."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from e2e.conftest import speech_like, talking_avatar  # noqa: F401  (a fixture)

from instag.bench.browser import CHROMIUM, chromium_page
from instag.viewer.camera import Orbit, ViewRange
from instag.viewer.config import PreviewConfig
from instag.viewer.live import MAX_CHUNK_SAMPLES, RATE, rms_dbfs
from instag.viewer.server import PreviewServer

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


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)


def preview_state(page) -> dict:
    return page.evaluate("({...window.instagPreview, clips: undefined})")


# Samples the page on each animation frame for `ms` milliseconds: (audio time, clock frame, frame shown, mode).
SAMPLE_JS = """(ms) => new Promise((done) => {
  const S = window.instagPreview, out = [], t0 = performance.now();
  const step = (now) => {
    out.push([S.audioTime, S.clockIndex, S.shownIndex, S.shownMode]);
    if (now - t0 < ms) requestAnimationFrame(step); else done(out);
  };
  requestAnimationFrame(step);
})"""


def drag(page, dx: float, dy: float, release: bool = True) -> None:
    box = page.locator("#view").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=8)
    if release:
        page.mouse.up()


def shown(page) -> tuple[np.ndarray, int]:
    """The canvas's pixels and the index of the frame it shows, read at once."""
    url, index = page.evaluate("[document.getElementById('view').toDataURL('image/png'), "
                               "window.instagPreview.shownIndex]")
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.float32), index


def test_page_plays_in_sync_orbits_and_shows_a_face(preview_server, page, tmp_path):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    renderer = preview_server.app.renderer
    trained = renderer.view
    renderer.view = ViewRange((-0.3, 0.3), (-0.1, 0.1))  # the tiny avatar's clip never turns: as if it had
    try:
        page.goto(preview_server.url)
        page.wait_for_function("window.instagPreview && window.instagPreview.connected && "
                               "window.instagPreview.receivedIdle > 2", timeout=30_000)
        fps = preview_state(page)["fps"]

        # Play: the frame shown is the one the audio clock picks (never one ahead of it), and it advances with
        # the audio. How close behind it stays is a speed: `instag bench preview`.
        page.click("#play")
        page.wait_for_function("window.instagPreview.shownMode === 'play' && "
                               "window.instagPreview.receivedPlay > 5", timeout=30_000)
        samples = [s for s in page.evaluate(SAMPLE_JS, 1000) if s[3] == "play"]
        assert samples, "no play frame was shown"
        assert samples[-1][0] - samples[0][0] > 0.5, "the audio clock did not advance"
        assert samples[-1][2] > samples[0][2], "the frames shown did not advance with the audio"
        for t, clock, index, _ in samples:
            assert clock == int(t * fps) and index <= clock, (t, clock, index)
        assert int(page.inner_text("#fps")) > 0
        float(page.inner_text("#latency"))

        # Pause: back to the idle loop. A drag turns the view no further than the avatar's views allow, and
        # when let go the view eases back to the front.
        page.click("#play")
        page.wait_for_function("window.instagPreview.shownMode === 'idle'", timeout=10_000)
        drag(page, 400, 150, release=False)
        cam = preview_state(page)["cam"]
        assert cam["yaw"] == pytest.approx(0.3, abs=1e-3) and cam["pitch"] == pytest.approx(0.1, abs=1e-3), cam
        page.wait_for_function("window.instagPreview.shownRev === window.instagPreview.rev", timeout=10_000)
        turned, k = shown(page)
        page.mouse.up()
        page.wait_for_function("window.instagPreview.cam.yaw === 0 && window.instagPreview.cam.pitch === 0",
                               timeout=10_000)
        assert preview_state(page)["cam"] == {"yaw": 0, "pitch": 0, "zoom": 1}
        page.wait_for_function("window.instagPreview.shownRev === window.instagPreview.rev", timeout=10_000)
        front, j = shown(page)
        at_bound = Orbit(*renderer.view.yaw[1:], *renderer.view.pitch[1:])
    finally:
        renderer.view = trained
    # The page showed the server's frames of those views: the turn stopped at the bound, and came back.
    assert np.abs(turned - decode(renderer.render_idle(k, at_bound).jpeg)).mean() < 1
    assert np.abs(front - decode(renderer.render_idle(j, Orbit()).jpeg)).mean() < 1
    assert np.abs(turned - decode(renderer.render_idle(k, Orbit()).jpeg)).mean() > 1

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




def test_an_uploaded_clip_in_which_nobody_is_heard_is_marked_with_what_a_song_wants(talking_avatar, page,  # noqa: F811
                                                                                     tmp_path):
    t = np.arange(int(4.0 * RATE)) / RATE
    chords = sum(np.sin(2 * np.pi * 220.0 * ratio * h * t) / h for ratio in (1.0, 1.26, 1.5) for h in range(1, 7))
    music = tmp_path / "band.wav"
    soundfile.write(music, 0.3 * chords / np.abs(chords).max(), RATE)
    server = PreviewServer(PreviewConfig(avatar=talking_avatar, port=0, device="cpu"))
    server.start()
    page.add_init_script(SENT_JS)
    try:
        page.goto(server.url)
        page.set_input_files("#upload", str(music))
        page.wait_for_function("document.getElementById('message').textContent.includes('ready')", timeout=30_000)
        assert "--no-voice-rest" in page.text_content("#message")
        assert "no voice heard" in page.evaluate("document.getElementById('clip').selectedOptions[0].textContent")
        # Its *song* box: the page then asks for a song's lips (at rest in silence only), as a new epoch.
        before = page.evaluate("window.__states.at(-1)")
        page.check("#song")
        page.wait_for_function("window.__states.at(-1).song === true", timeout=10_000)
        assert not before["song"] and page.evaluate("window.__states.at(-1).epoch") > before["epoch"]
    finally:
        server.stop()


# Keeps every state message the page sends (window.__states), to read what it asked for.
SENT_JS = """(() => {
  window.__states = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string") window.__states.push(JSON.parse(data));
    return send.call(this, data);
  };
})();"""


def microphone_file(path: Path) -> tuple[Path, list[tuple[float, float]]]:
    """A 16 kHz WAV for Chromium's fake microphone: speech-like bursts between stretches of digital silence;
    → (the file, the bursts as (start, end) seconds). Chromium plays it in a loop."""
    bursts = [(1.0, 2.2), (3.4, 4.4)]
    x = np.zeros(int(5.6 * RATE), np.float32)
    for start, end in bursts:
        x[int(start * RATE):int(end * RATE)] = speech_like(end - start, RATE, 1)[:, 0] * 2
    soundfile.write(path, x, RATE, subtype="PCM_16")
    return path, bursts


# A second page that takes the microphone slot once it is free and sends `bytes` of audio: → the close code and
# reason it gets.
ROGUE_JS = """(bytes) => new Promise((done) => {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => ws.send(JSON.stringify({ type: "state", clip: null, playing: false, live: true }));
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string" && JSON.parse(ev.data).type === "live") ws.send(new Uint8Array(bytes));
  };
  ws.onclose = (ev) => done([ev.code, ev.reason]);
})"""


def test_the_microphone_drives_the_lips_and_silence_shuts_them(preview_server, tmp_path):
    pytest.importorskip("playwright.sync_api")
    wav, bursts = microphone_file(tmp_path / "microphone.wav")
    renderer = preview_server.app.renderer
    with chromium_page(tmp_path / "profile", microphone=wav) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(preview_server.url)
        page.wait_for_function("window.instagPreview && window.instagPreview.connected", timeout=30_000)
        page.evaluate("window.instagPreview.record = true")
        page.click("#mic")
        # Once round the file, and into it again: every burst and every silence heard at least once.
        page.wait_for_function(f"window.instagPreview.heardSamples > {int(7.0 * RATE)}", timeout=60_000)
        assert page.inner_text("#mode").startswith("live")
        float(page.inner_text("#latency"))
        frames = page.evaluate("window.instagPreview.recFrames.map((f) => ({...f, jpeg: Array.from(f.jpeg)}))")
        heard = np.concatenate([np.asarray(c, np.float32) for c in page.evaluate(
            "window.instagPreview.recChunks.map((c) => Array.from(c[2]))")]) / 32768.0
        sent = np.array(page.evaluate("window.instagPreview.recChunks.map((c) => [c[0], c[1]])"))  # [samples, ms]
        # The microphone slot is taken: another page is refused it.
        refusal = page.evaluate("""() => new Promise((done) => {
          const ws = new WebSocket(`ws://${location.host}/ws`);
          ws.onopen = () => ws.send(JSON.stringify({ type: "state", clip: null, playing: false, live: true }));
          ws.onmessage = (ev) => { if (typeof ev.data === "string" && JSON.parse(ev.data).type === "error") {
            done(JSON.parse(ev.data)); ws.close(); } };
        })""")
        page.click("#mic")  # let go of it
        # The WebSocket cuts off a page that sends an oversized or a malformed audio message.
        oversized = page.evaluate(ROGUE_JS, 2 * (MAX_CHUNK_SAMPLES + 1))
        malformed = page.evaluate(ROGUE_JS, 3)
    assert not errors, errors
    assert "another tab" in refusal["message"] and refusal["live"] is False
    assert oversized[0] == 1008 and "over the limit" in oversized[1], oversized
    assert malformed[0] == 1008 and "odd length" in malformed[1], malformed

    # Where the microphone heard the file's speech and where its silences (digital zeros), frame by frame; a frame
    # is drawn once the look-ahead after it has been heard too.
    fps = renderer.fps
    look_back = renderer.avatar.cfg.audio.smooth_window // 2
    spf = RATE / fps
    for f in frames:  # not drawn before the page had sent the look-ahead's audio
        needed = int(round((f["i"] + 1 + renderer.live.lookahead) * spf))
        assert sent[np.searchsorted(sent[:, 0], needed), 1] <= f["drawn"], f["i"]
    loud = [rms_dbfs(heard[int(f["end"] - spf):f["end"]]) > -30 for f in frames]  # speech over the whole frame
    shut = [np.abs(heard[max(int(f["end"] - (look_back + 1) * spf), 0):int(f["end"] + renderer.live.lookahead * spf)]).max()
            == 0 for f in frames]
    # Speech over the frame and every frame its smoothing looks back on, as `shut` is silence over them: the first
    # frame of a burst is voiced, but the few milliseconds of speech at its end may not move the test avatar's lips
    # by a whole grey level.
    spoken = [i >= look_back and all(loud[i - look_back:i + 1]) for i in range(len(frames))]
    assert sum(spoken) >= 10 and sum(shut) >= 10, (sum(spoken), sum(shut))

    def idle(k: int) -> np.ndarray:
        return decode(renderer.render_idle(k, Orbit()).jpeg)

    for f, is_loud, is_spoken, is_shut in zip(frames, loud, spoken, shut, strict=True):
        img = decode(bytes(f["jpeg"]))
        if is_shut:  # the closed mouth of the idle loop, at the same step of the head's motion
            assert not f["voiced"] and np.abs(img - idle(f["i"])).max() == 0, f["i"]
        if is_loud:  # a voice heard over the frame drives it
            assert f["voiced"], f["i"]
        if is_spoken:  # speaking: the mouth leaves the closed one
            assert np.abs(img - idle(f["i"])).max() > 0, f["i"]
