"""A headless Chromium (Debian's /usr/bin/chromium, driven by Playwright, no browser download) for the preview
page's benchmark and tests; optionally with a sound file as its microphone (Chromium's fake capture device)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from instag.errors import InputError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
)


def fake_microphone_args(wav: Path) -> list[str]:
    """Chromium flags that grant the page a microphone playing `wav` (16-bit PCM WAV) in a loop."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]


@contextlib.contextmanager
def chromium_page(profile: Path, microphone: Path | None = None) -> Iterator:
    """A Playwright page in a fresh headless Chromium with its profile in `profile`; `microphone`: a WAV file
    the page hears as its microphone."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise InputError("the browser needs playwright (pip install -e '.[dev]')") from exc
    if not CHROMIUM.exists():
        raise InputError(f"no {CHROMIUM} (make setup installs it)")
    args = list(CHROMIUM_ARGS) + (fake_microphone_args(microphone) if microphone else [])
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                   args=args, viewport={"width": 1000, "height": 700},
                                                   bypass_csp=True)  # the page's CSP forbids eval(); Playwright polls with it
        try:
            yield ctx.new_page()
        finally:
            ctx.close()
