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

import importlib.util
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File


def _sibling(name: str):
    """Load docs/_ext/<name>.py (hooks are loaded by path, not as part of a package)."""
    spec = importlib.util.spec_from_file_location(f"_pde_popdyn_docs_{name}",
                                                  Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reexports = _sibling("reexports")
log = logging.getLogger("mkdocs.hooks.pde_popdyn")
PACKAGE = reexports.PACKAGE
_DIRECTIVE = re.compile(rf"^:::[ \t]+{PACKAGE}\.(\w+)[ \t]*$", re.MULTILINE)

_state: dict = {}


# -- hooks -----------------------------------------------------------------------------------
def on_config(config, **kwargs):
    root = Path(config.config_file_path).resolve().parent
    exported = [n for n in reexports.exported(root) if n != "__version__"]
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
        target = reexports.defining_path(root, PACKAGE, name)
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
