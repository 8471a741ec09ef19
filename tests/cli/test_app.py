"""The console entry point's own behaviour: warnings shown to a user as one line each."""

from __future__ import annotations

import warnings

from instag_testing import run_instag

from instag.cli import app
from instag.kernels.backend import BackendFallbackWarning


def test_warnings_are_one_line_each(capsys):
    app._show_warning(BackendFallbackWarning("rasterize: backend 'auto' fell back to instag-cpp (no CUDA)"),
                      BackendFallbackWarning, "/x/instag/render/avatar.py", 108, line="    raster = rasterize(")
    app._show_warning(RuntimeWarning("overflow in exp"), RuntimeWarning, "/lib/numpy/core.py", 7)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["note: rasterize: backend 'auto' fell back to instag-cpp (no CUDA)",
                     "warning: RuntimeWarning: overflow in exp (/lib/numpy/core.py:7)"]


def test_main_puts_back_the_warning_display_it_replaced():
    before = warnings.showwarning
    assert run_instag("doctor", "--json").returncode == 0
    assert warnings.showwarning is before
