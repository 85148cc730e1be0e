"""Griffe extension: render the reStructuredText bits of the package's docstrings as Markdown.

The docstrings are numpy style and use a few Sphinx conventions that Markdown does not know:

* cross-reference roles, ``:func:`pde_popdyn.solve```, ``:class:`~pde_popdyn.grid.Grid```,
  ``:mod:``, ``:meth:``, ``:attr:``. A role whose target is a public name of the package
  (``pde_popdyn.NAME``, or ``pde_popdyn.module.NAME`` re-exported as ``pde_popdyn.NAME``)
  becomes a link to its API entry; any other target becomes inline code (``~`` keeps the last
  component, as in Sphinx). Only public names are linked because only they are rendered: a
  link to a private helper would be a dangling reference.
* the literal-block marker ``::`` that ends a paragraph before an indented code block; in
  Markdown the indented block is code by itself, so ``text::`` becomes ``text:`` and a ``::``
  alone on a line is dropped.

The docstrings themselves are not changed; only what the documentation shows.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
_LITERAL_END = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)
_LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.MULTILINE)


def _public_names(init: Path) -> dict[str, str]:
    """Map 'pde_popdyn.NAME' and 'pde_popdyn.<module>.NAME' (the re-exported source) to
    'pde_popdyn.NAME' for every name that the package's __init__ exports."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    exported: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            exported = set(ast.literal_eval(node.value))
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                public = alias.asname or alias.name
                if public in exported:
                    names[f"pde_popdyn.{node.module}.{alias.name}"] = f"pde_popdyn.{public}"
    for public in exported:
        names[f"pde_popdyn.{public}"] = f"pde_popdyn.{public}"
    return names


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles and ``::`` markers in every docstring (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        init = Path(__file__).resolve().parents[2] / "pde_popdyn" / "__init__.py"
        self._public = _public_names(init) if init.is_file() else {}

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
