"""MkDocs hooks of the pde_popdyn documentation (loaded by ``hooks:`` in mkdocs.yml).

1. API directives by public name. A page under ``api/`` writes ``::: pde_popdyn.NAME`` for a
   name that ``pde_popdyn/__init__.py`` re-exports. The hook follows the re-export statically
   (``from .module import NAME``, through any number of packages) to the module that defines
   NAME and renders that definition, with an anchor ``pde_popdyn.NAME`` in front of it so that
   ``[text][pde_popdyn.NAME]`` links keep working. So the API pages do not change when code
   moves between modules, and a function named like its module (``pde_popdyn.solve``, the
   function, defined in ``pde_popdyn/solve.py``) is documented as the function: griffe, which
   mkdocstrings uses, would otherwise take the submodule of the same name.
2. Completeness. Every name in ``pde_popdyn.__all__`` (except ``__version__``) must appear in
   an API page, and every ``::: pde_popdyn.NAME`` must name an exported object; otherwise the
   build warns (an error under ``--strict``) and says which line to add or remove.
3. Files from outside ``docs/``: the repository's ``CHANGELOG.md`` becomes ``changelog.md``,
   and the generated benchmark summary ``benchmarks/RESULTS.md`` with its figures and JSON
   results becomes ``benchmarks/RESULTS.md`` of the site, so that neither is copied by hand.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.pde_popdyn")

PACKAGE = "pde_popdyn"
_DIRECTIVE = re.compile(rf"^:::[ \t]+{PACKAGE}\.(\w+)[ \t]*$", re.MULTILINE)

_state: dict = {}


# -- static resolution of re-exports ---------------------------------------------------------
def _module_file(root: Path, dotted: str) -> Path | None:
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


def _defining_path(root: Path, module: str, name: str, depth: int = 0) -> str | None:
    """``module.name`` as the dotted path of its definition, following ``from x import name``
    re-exports statically; None if it cannot be followed (then the directive is left alone)."""
    path = _module_file(root, module)
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
                    found = (_defining_path(root, source, alias.name, depth + 1)
                             or f"{source}.{alias.name}")
    return found


def _exported(root: Path) -> list[str]:
    """``__all__`` of the package's ``__init__.py``, read statically."""
    init = _module_file(root, PACKAGE)
    if init is None:
        return []
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [str(v) for v in ast.literal_eval(node.value)]
    return []


# -- hooks -----------------------------------------------------------------------------------
def on_config(config, **kwargs):
    root = Path(config.config_file_path).resolve().parent
    exported = [n for n in _exported(root) if n != "__version__"]
    _state.update(root=root, exported=exported, documented={})
    if not exported:
        log.warning(f"could not read __all__ from {PACKAGE}/__init__.py: the API pages cannot "
                    f"be checked for completeness")
    return config


def on_files(files, config, **kwargs):
    root: Path = _state["root"]
    extra = [(root / "CHANGELOG.md", "changelog.md")]
    bench = root / "benchmarks"
    extra.append((bench / "RESULTS.md", "benchmarks/RESULTS.md"))
    for pattern in ("*.png", "*.json"):
        for p in sorted((bench / "results").glob(pattern)):
            extra.append((p, f"benchmarks/results/{p.name}"))
    for src, uri in extra:
        if not src.is_file():
            log.warning(f"{src.relative_to(root)} is missing: the page {uri} cannot be built")
            continue
        files.append(File.generated(config, uri, abs_src_path=str(src)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if not page.file.src_uri.startswith("api/"):
        return markdown
    root: Path = _state["root"]
    exported = set(_state["exported"])

    def rewrite(match: re.Match) -> str:
        name = match.group(1)
        _state["documented"].setdefault(name, page.file.src_uri)
        if exported and name not in exported:
            log.warning(f"{page.file.src_uri}: '::: {PACKAGE}.{name}' documents a name that "
                        f"{PACKAGE}/__init__.py does not export (__all__); remove the line or "
                        f"export the name")
            return match.group(0)
        target = _defining_path(root, PACKAGE, name)
        if target is None or target == f"{PACKAGE}.{name}":
            return match.group(0)
        return f"[](){{#{PACKAGE}.{name}}}\n::: {target}"

    return _DIRECTIVE.sub(rewrite, markdown)


def on_env(env, config, files, **kwargs):
    missing = [n for n in _state["exported"] if n not in _state["documented"]]
    for name in missing:
        log.warning(f"{PACKAGE}.{name} is exported (__all__) but has no API entry: add the line "
                    f"'::: {PACKAGE}.{name}' to a page under docs/api/")
    return env
