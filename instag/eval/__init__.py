"""Evaluation: image metrics (PSNR, SSIM), lip-sync metrics (LMD, mouth-opening correlation) and the runner."""

from instag.eval.runner import EVAL_KEYS, evaluate, score_frames

__all__ = ["EVAL_KEYS", "evaluate", "score_frames"]
