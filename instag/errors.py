"""Typed errors raised below the CLI; `instag.cli` turns each into one clear line and an exit code."""

from __future__ import annotations


class InstagError(Exception):
    """Base of every error instag raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(InstagError):
    """The user's input (a file, a flag, a directory) is unusable; the message names it and what is wrong."""

    exit_code = 2


class FormatVersionError(InputError):
    """A dataset/avatar/UMF file carries a format version this instag does not know."""


class BackendUnavailableError(InstagError):
    """An explicitly requested kernel backend cannot run here (no CUDA, no compiler, package missing)."""

    exit_code = 2


class KernelBuildError(InstagError):
    """A JIT build of a `cuda_ext` kernel library failed; the message carries the compiler's complaint."""
