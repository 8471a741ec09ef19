"""Matching the pasted head's colour and sharpness to the source's, so the seam does not show.

The head is rendered at the avatar's size (256²) and upscaled into a face 2–3× larger in the source, and the
avatar's colours are what its training converged to, not the clip's exact ones: pasted as is, the face is softer
than its surroundings (0.76 of the source's Laplacian on demo2) and its colour sits a few levels off the source's
across the seam (benchmarks/render_paste_back_seam_cpu.md).

- Colour: in the ring just inside the head's outline (hair, forehead, cheeks, jaw: what a dub leaves as the clip
  had it) the render and the source show the same thing. Per YUV channel the median of source − render there,
  on the render's own pixel grid (the source area-averaged onto it), is added to the head; a median, because
  where the two outlines differ by a pixel the ring holds background on one side. It is a running mean of the
  frames' estimates (over the last `frames` frames or so, exponentially weighted; it moves by well under a level
  a frame): one frame's estimate alone would make the face flicker, one fixed offset for the whole clip missed the
  exposure's drift along it (it made the cast worse on demo2's later frames), and an estimate every 4th frame
  only lagged behind that drift on KatieHill.
- Sharpness: at the render's own scale its detail is already about as strong as the source's (an unsharp mask
  matched to it changed nothing); what the face lacks is the detail finer than a render pixel, which upscaling
  cannot make and sharpening only fakes (an unsharp mask at the source's scale cost 0.5 dB). That detail is in
  the source frame the head is pasted into: its high-frequency band (the frame less its Gaussian blur at one
  render pixel) is added to the head wherever the blurred render and the blurred source agree (by `tau` levels
  of luma, the gate falling linearly to 0), so skin, beard and hair keep the clip's texture and where the dub
  moved the lips the clip's old edges stay out. The detail is softly capped at `texture` levels: what still
  passes the gate at the edges of lips and teeth would otherwise show the clip's old mouth as a faint line.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EDGE = 0.5  # head weight that marks the outline


@dataclass(frozen=True)
class SeamMatch:
    colour: bool = True  # offset the head's colour to the source's (see the module doc)
    detail: bool = True  # add the source's detail finer than a render pixel where the two agree
    frames: int = 25  # the colour offset's time constant, in composed frames
    ring: float = 0.04  # width of the colour ring inside the outline, as a fraction of the render side
    sigma: float = 1.0  # the detail band's Gaussian, in render pixels
    tau: float = 16.0  # luma levels of blurred render − source at which the detail gate closes
    texture: float = 8.0  # luma levels the transferred detail is softly capped at (c·tanh(d / c))


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


class SeamCalibration:
    """The colour offset for one source and avatar, learnt as frames are composed, and the detail transfer."""

    def __init__(self, match: SeamMatch, render_size: int) -> None:
        self.match = match
        self.ring_px = max(2.0, match.ring * render_size)
        self.n = 0  # colour estimates so far
        self.offset = np.zeros(3)  # [3] Y, U, V levels added to the head

    @property
    def learning(self) -> bool:
        """Whether composing needs the source on the render's grid, for `update`."""
        return self.match.colour

    def update(self, head: np.ndarray, source: np.ndarray) -> None:
        """Add one frame: head [h, w, 4] premultiplied Y, U, V levels and weight w; source [h, w, 3] Y, U, V at the
        same pixels."""
        w = head[..., 3]
        inside = cv2.distanceTransform((w >= EDGE).astype(np.uint8), cv2.DIST_L2, 3)
        ring = (w >= EDGE) & (inside <= self.ring_px)
        if ring.sum() < 16:  # the head is (nearly) out of the frame
            return
        colour = head[..., :3] / np.maximum(w, 1e-6)[..., None]
        self.n += 1
        # the running mean of the per-frame medians, then (from `frames` on) an exponential mean that follows the
        # clip's slow changes of exposure without the frame-to-frame jitter of a single frame's estimate
        step = 1.0 / min(self.n, self.match.frames)
        self.offset = self.offset + step * (np.median(source[ring] - colour[ring], axis=0) - self.offset)

    def recolour(self, head: np.ndarray) -> None:
        """Add the colour offset to head [h, w, 4] (premultiplied Y, U, V levels and weight), in place."""
        if self.n:
            head[..., :3] += head[..., 3:] * self.offset.astype(np.float32)

    def add_detail(self, luma: np.ndarray, source_y: np.ndarray, scale: float) -> None:
        """Add the source's gated detail band to luma [h, w, 2] (premultiplied Y, weight; on the source's pixels),
        in place; source_y [h, w] uint8 is the source's luma there, `scale` source pixels per render pixel."""
        if not self.match.detail:
            return
        sigma = self.match.sigma * scale
        # the render's blur normalised by its blurred weight: where the head fades out, its colour, not a mix
        # with the zeros beyond it
        blurred_luma = _blur(luma, sigma)
        render = blurred_luma[..., 0] / np.maximum(blurred_luma[..., 1], 1e-3)
        source = source_y.astype(np.float32)
        blurred = _blur(source, sigma)
        gate = np.clip(1.0 - np.abs(render - blurred) / self.match.tau, 0.0, 1.0)
        cap = self.match.texture
        luma[..., 0] += luma[..., 1] * gate * cap * np.tanh((source - blurred) / cap)
