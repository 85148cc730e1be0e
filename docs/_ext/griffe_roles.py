"""Griffe extension: render the reStructuredText bits of the package's docstrings as Markdown.

The docstrings are numpy style and use a few Sphinx conventions that Markdown does not know:

* cross-reference roles, ``:func:`pde_popdyn.solve```, ``:class:`~pde_popdyn.grid.Grid```,
  ``:mod:``, ``:meth:``, ``:attr:``. A role whose target is a public name of the package
  (``pde_popdyn.NAME``, or any path by which ``pde_popdyn/__init__.py`` re-exports it) becomes
  a link to its API entry; any other target becomes inline code (``~`` keeps the last
  component, as in Sphinx). Only public names are linked because only they are rendered: a
  link to a private helper would be a dangling reference.
* the literal-block marker ``::`` that ends a paragraph before an indented code block; in
  Markdown the indented block is code by itself, so ``text::`` becomes ``text:`` and a ``::``
  alone on a line is dropped.

The docstrings themselves are not changed; only what the documentation shows.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import griffe

_spec = importlib.util.spec_from_file_location("_pde_popdyn_docs_reexports",
                                               Path(__file__).with_name("reexports.py"))
reexports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reexports)

_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
_LITERAL_END = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)
_LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.MULTILINE)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles and ``::`` markers in every docstring (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # the repository root: docs/_ext/griffe_roles.py -> ../..
        self._public = reexports.public_targets(Path(__file__).resolve().parents[2])

    def _role(self, match: re.Match) -> str:
        _kind, tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        public = self._public.get(target)
        if public is not None:
            return f"[`{shown}`][{public}]"
        return f"`{shown}`"

    def _fix(self, obj: griffe.Object) -> None:
        doc = obj.docstring
        if doc is None or not doc.value:
            return
        text = _ROLE.sub(self._role, doc.value)
        text = _LITERAL_ALONE.sub("", text)
        text = _LITERAL_END.sub(":", text)
        doc.value = text

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: D102
        self._fix(obj)
