"""When to show a progress bar: the one decision every run loop shares."""

from __future__ import annotations

import sys


def in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) session: its shell has a ``kernel``.

    IPython is not imported here: a session that has not loaded it is not a notebook.
    """
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None) if ipython is not None else None
    shell = get() if callable(get) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress_enabled(progress: bool | None) -> bool:
    """Whether a run shows its progress bar.

    ``True``/``False`` decide. ``None`` (the default of the solvers) shows it on a terminal
    (standard error is a TTY, where tqdm writes) and in Jupyter (where ``tqdm.auto`` draws a
    widget, or text without ipywidgets), and hides it elsewhere: in logs, pipes and CI.
    """
    if progress is not None:
        from ._validate import flag
        return flag("progress", progress)
    stream = sys.stderr
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError):   # a closed or replaced stream
        tty = False
    return tty or in_jupyter()
