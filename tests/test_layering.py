"""The package's rooms import one way, in the data-flow order of the code tour (docs/code-tour.md).

Every module belongs to a room; a module imports only from its own room or an earlier one. Function-level
imports count too: a deferred import that reaches down the list is still a dependency.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "convnextpose_eval"


def _tour_rooms() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", PACKAGE.parents[1] / "scripts" / "mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks.ROOMS

# Data-flow order, as the code tour lists it (its generator holds the one list). The top level holds the
# public API and the entry points: it may import anything.
ROOMS = list(_tour_rooms())
TOP_LEVEL = {"__init__", "__main__", "api", "inspect", "bench", "export", "compare"}


def _module_parts(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE).with_suffix("").parts


def _rank(parts: tuple[str, ...]) -> int | None:
    """The room of a package-relative module path; len(ROOMS) for the top level; None outside the package."""
    if parts and parts[0] in ROOMS:
        return ROOMS.index(parts[0])
    return len(ROOMS) if len(parts) == 1 and parts[0] in TOP_LEVEL else None


def imported_modules(path: Path) -> set[tuple[str, ...]]:
    """Package-relative module paths ``path`` imports, relative and absolute, at any depth of the file."""
    module = _module_parts(path)
    package = module[:-1]
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = (*base, *(node.module.split(".") if node.module else ()))
            names = [alias.name for alias in node.names]
            # ``from . import x`` names modules of that package: count each.
            found.update({(*target, name) for name in names} if not node.module else {target})
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "convnextpose_eval":
            found.add(tuple(node.module.split(".")[1:]))
        elif isinstance(node, ast.Import):
            found.update(tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "convnextpose_eval")
    return {target for target in found if target}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "conf" not in _module_parts(p)[:1])


def test_every_module_belongs_to_a_room():
    homeless = ["/".join(_module_parts(p)) for p in _modules() if _rank(_module_parts(p)) is None]
    assert not homeless, f"modules outside the rooms of {ROOMS} (add them to a room or to TOP_LEVEL): {homeless}"


def test_rooms_import_only_from_their_own_room_or_earlier_ones():
    broken = []
    for path in _modules():
        parts = _module_parts(path)
        rank = _rank(parts)
        for target in imported_modules(path):
            other = _rank(target[:1]) if target[0] in ROOMS else _rank(target[:1]) if len(target) == 1 else None
            if rank is not None and other is not None and other > rank:
                broken.append(f"{'/'.join(parts)}.py imports {'.'.join(target)}")
    assert not broken, "\n".join(broken)


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """The rule above must be able to fail: a results/ module importing run/ is reported."""
    global PACKAGE
    fake = tmp_path / "convnextpose_eval"
    (fake / "results").mkdir(parents=True)
    (fake / "results" / "writer.py").write_text("from ..run.evaluation import evaluate\nfrom ..common.errors import EvalError\n")
    saved, PACKAGE = PACKAGE, fake
    try:
        targets = imported_modules(fake / "results" / "writer.py")
        assert targets == {("run", "evaluation"), ("common", "errors")}
        assert _rank(("run",)) > _rank(("results",)) > _rank(("common",))
    finally:
        PACKAGE = saved


def test_the_evaluator_sees_only_the_forward_interface():
    """The LightningModule runs every engine through ``Forward``: it never names an engine's module."""
    imports = imported_modules(PACKAGE / "model" / "evaluator.py")
    assert {t for t in imports if t[0] == "backends"} <= {("backends",), ("backends", "base")}, imports
    assert not [t for t in imports if any("onnx" in part or "pytorch" in part for part in t)], imports


def test_no_import_cycle_between_modules():
    """No two modules import each other, even inside functions (the config room had such a pair)."""
    edges = {}
    for path in _modules():
        parts = _module_parts(path)
        name = parts[:-1] if parts[-1] == "__init__" else parts
        edges[name] = {t for t in imported_modules(path)}
    pairs = sorted({tuple(sorted([".".join(a), ".".join(b)])) for a, targets in edges.items() for b in targets
                    if b != a and a in edges.get(b, set())})  # fmt: skip
    assert not pairs, pairs


def test_a_module_over_400_lines_says_why_at_its_top():
    """Long modules are where rooms stop saying what they do; one that must stay long says why in its docstring."""
    unexplained = []
    for path in _modules():
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if len(text.splitlines()) > 400 and "Why one module of this length" not in doc:
            unexplained.append(f"{'/'.join(_module_parts(path))}.py ({len(text.splitlines())} lines)")
    assert not unexplained, unexplained
