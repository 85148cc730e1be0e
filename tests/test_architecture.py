"""The package's layout keeps its promises: imports run one way (no circle, counting imports
inside functions), no solver branches on a rule's type, no module grows past ~600 lines, and
no package file cites documents users do not have."""

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pde_popdyn"
RULES = {"Replicator", "BoltzmannJump", "Truncation", "PBT", "Diffusion", "GaussianJump",
         "Perturb", "PriorResample"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                target = _resolve(mod, is_pkg, node.level, node.module)
                targets.append(target)
                targets += [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "pde_popdyn"):
                targets.append(node.module)
                targets += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.startswith("pde_popdyn")]
            for t in targets:
                if t in mods and t != mod:
                    graph[mod].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            # a package's __init__ importing its own submodules is the package, not a circle
            if n.startswith(m + "."):
                continue
            if colour.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if colour.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(graph):
        if colour.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_circle_counting_imports_inside_functions():
    cycle = _cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_solver_branches_on_a_rule_type():
    offenders = []
    for path in PKG.rglob("*.py"):
        if "rules" in path.relative_to(PKG).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} | \
                        {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                if names & RULES:
                    offenders.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert not offenders, f"isinstance on rule classes outside pde_popdyn/rules: {offenders}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_over_600_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG)} has {n} lines (split it by idea)"


def test_no_package_file_cites_documents_users_do_not_have():
    pattern = re.compile(r"\b(MODEL|DESIGN)\.md\b|\.\./shared")
    hits = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if pattern.search(p.read_text())]
    assert not hits, f"these files cite MODEL.md/DESIGN.md: {hits}"


def test_no_repository_text_cites_documents_users_do_not_have():
    """README, docs, notebooks, benchmarks, examples and tests: what a user of a clone reads."""
    root = PKG.parent
    pattern = re.compile(r"\b(MODEL|DESIGN)\.md\b|\.\./shared")
    files = [root / "README.md", root / "CHANGELOG.md"]
    for folder, suffixes in (("docs", (".md",)), ("notebooks", (".ipynb", ".py")),
                             ("benchmarks", (".py", ".md")), ("examples", (".py",)),
                             ("tests", (".py",))):
        files += [p for p in (root / folder).rglob("*") if p.suffix in suffixes]
    me = Path(__file__).resolve()
    hits = [str(p.relative_to(root)) for p in files
            if p.resolve() != me and pattern.search(p.read_text(encoding="utf-8"))]
    assert not hits, f"these files cite MODEL.md/DESIGN.md: {hits}"
