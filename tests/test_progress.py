"""Progress bars: None means "on a terminal or in Jupyter" (issue 16, item 4)."""

import io
import sys
import types

import pde_popdyn as pp
from pde_popdyn._progress import in_jupyter, progress_enabled
from pde_popdyn.presets import build


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def _fake_jupyter(monkeypatch):
    shell = types.SimpleNamespace(kernel=object(), config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))


def test_progress_enabled_decides(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    assert progress_enabled(None) is False             # a log or a pipe
    assert progress_enabled(True) is True and progress_enabled(False) is False
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    assert progress_enabled(None) is True              # a terminal
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    _fake_jupyter(monkeypatch)
    assert in_jupyter() and progress_enabled(None) is True
    assert progress_enabled(False) is False
    # a plain IPython terminal shell has no kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(
        get_ipython=lambda: types.SimpleNamespace()))
    assert not in_jupyter()


def test_solve_shows_its_bar_in_jupyter_by_default(monkeypatch):
    """In a notebook standard error is no TTY; the bar must show all the same."""
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(16, 12)
    err = _Stream(tty=False)
    monkeypatch.setattr(sys, "stderr", err)
    _fake_jupyter(monkeypatch)
    pp.solve(prob.model(), grid, prob.initial(grid), 0.1, 0.05)
    assert "pde_popdyn:" in err.getvalue() and "/2 [" in err.getvalue()
    err2 = _Stream(tty=False)
    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setattr(sys, "stderr", err2)
    pp.solve(prob.model(), grid, prob.initial(grid), 0.1, 0.05)
    assert err2.getvalue() == ""                          # not in a pipe
