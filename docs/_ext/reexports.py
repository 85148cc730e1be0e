"""Static resolution of the package's public names (used by hooks.py and griffe_roles.py).

Reads ``pde_popdyn/__init__.py`` and follows ``from .module import NAME`` re-exports, through any
number of packages, to the module that defines NAME. Nothing is imported: the documentation
describes the source in this checkout, whatever version of the package is installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "pde_popdyn"


def module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    # the package a relative import starts from: the module itself if it is a package
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def defining_path(root: Path, module: str, name: str, depth: int = 0) -> str | None:
    """``module.name`` as the dotted path of its definition, following ``from x import name``
    re-exports statically; None if it cannot be followed (then the directive is left alone)."""
    path = module_file(root, module)
    if path is None or depth > 10:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                found = f"{module}.{name}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = f"{module}.{name}"
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(module, is_package, node)
                    if source.split(".")[0] != PACKAGE:
                        return None
                    found = (defining_path(root, source, alias.name, depth + 1)
                             or f"{source}.{alias.name}")
    return found


def exported(root: Path) -> list[str]:
    """``__all__`` of the package's ``__init__.py``, read statically."""
    init = module_file(root, PACKAGE)
    if init is None:
        return []
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [str(v) for v in ast.literal_eval(node.value)]
    return []


def public_targets(root: Path) -> dict[str, str]:
    """Every dotted path by which a public object can be named (``pde_popdyn.NAME``, the path of
    its definition, and each intermediate re-export), mapped to ``pde_popdyn.NAME``."""
    targets: dict[str, str] = {}
    for name in exported(root):
        public = f"{PACKAGE}.{name}"
        targets[public] = public
        _collect(root, PACKAGE, name, public, targets, 0)
    return targets


def _collect(root: Path, module: str, name: str, public: str, targets: dict, depth: int) -> None:
    path = module_file(root, module)
    if path is None or depth > 10:
        return
    is_package = path.name == "__init__.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(module, is_package, node)
                    if source.split(".")[0] == PACKAGE:
                        targets.setdefault(f"{source}.{alias.name}", public)
                        _collect(root, source, alias.name, public, targets, depth + 1)
