"""Which thread paces a paste-back dub: one job run in this process with timers on the encoder's queue.

    python benchmarks/scripts/paste_back_threads.py AVATAR AUDIO

Prints the job's speed and stages, the render (main) thread's CPU seconds and how long it waited to hand frames
over, and the encoder thread's CPU and wall seconds and how long it waited for frames. The thread that never
waits is the one that paces the job.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
from pathlib import Path

import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.dubbing import DubJob, RenderOptions, run_jobs
from instag.media import mp4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("audio")
    args = ap.parse_args()
    waits = {"render_thread_waiting_to_hand_over_s": 0.0, "encoder_thread_waiting_for_frames_s": 0.0}
    encoder = {}
    get, put, run = queue.Queue.get, queue.Queue.put, mp4.Mp4Writer._run

    def timed_get(self, *a, **k):
        t = time.perf_counter()
        try:
            return get(self, *a, **k)
        finally:
            if threading.current_thread().name == "mp4-writer":
                waits["encoder_thread_waiting_for_frames_s"] += time.perf_counter() - t

    def timed_put(self, *a, **k):
        t = time.perf_counter()
        try:
            return put(self, *a, **k)
        finally:
            if threading.current_thread() is threading.main_thread():
                waits["render_thread_waiting_to_hand_over_s"] += time.perf_counter() - t

    def timed_run(self):
        t, c = time.perf_counter(), time.thread_time()
        run(self)
        encoder.update(encoder_wall_s=time.perf_counter() - t, encoder_cpu_s=time.thread_time() - c)

    queue.Queue.get, queue.Queue.put, mp4.Mp4Writer._run = timed_get, timed_put, timed_run
    av = load_avatar(args.avatar)
    cpu = time.thread_time()
    with tempfile.TemporaryDirectory() as tmp:
        [r] = run_jobs(av, [DubJob(Path(args.audio), Path(tmp) / "dub.mp4", True)], RenderOptions(force=True),
                       torch.device("cpu"))
    print(f"{r.speed:.3f}× real time; stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in r.timings_s.items()))
    print(f"render thread CPU {time.thread_time() - cpu:.2f} s (features included); "
          + "; ".join(f"{k} {v:.2f}" for k, v in (waits | encoder).items()))


if __name__ == "__main__":
    main()
