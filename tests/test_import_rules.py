"""The import rules of docs/design.md, checked from the code's own imports.

The rules are read from the document, so the document and the code cannot drift
apart: a new import across parts either follows a rule or changes the rule, in the
open. Imports inside functions count (a lazy import still ties two parts together).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipeline"
FRAMEWORKS = {"keras", "tensorflow", "jax", "torch"}
MAX_MODULE_LINES = 300


def _rules() -> tuple[dict[str, set[str]], set[str]]:
    """{part: parts it may import} and the framework-free modules, from docs/design.md."""
    text = (REPO / "docs" / "design.md").read_text()
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    allowed = {}
    for part, names in re.findall(r"^- `(\w+)`: (.+)$", section, re.MULTILINE):
        allowed[part] = set() if names.strip() == "nothing" else set(names.split(", "))
    free = re.search(r"^- framework-free: (.+)$", section, re.MULTILINE).group(1)
    return allowed, set(free.split(", "))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """pipeline.runs.run_dir -> runs; pipeline.errors -> errors; pipeline -> pipeline."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at the top level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            # A relative import would slip past the rules: the project writes none.
            raise AssertionError(f"{path}: relative import of {node.module or '.'}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pipeline import api` imports the module pipeline.api.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            modules = [name for name in names if _is_module(name)] or [node.module]
            found += [(module, id(node) in top) for module in modules]
    return found


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = {_module_name(path): path for path in sorted(PIPELINE.rglob("*.py"))}


def test_the_rules_name_every_part_and_form_no_cycle():
    allowed, _ = _rules()
    parts = {_part(module) for module in MODULES}
    assert parts == set(allowed), "docs/design.md must have one rule line per part"
    assert set().union(*allowed.values()) <= parts
    # Parts in an order where each imports only parts before it: no cycle.
    ordered, remaining = [], dict(allowed)
    while remaining:
        ready = [part for part, uses in remaining.items() if uses <= set(ordered)]
        assert ready, f"the rules form a cycle among {sorted(remaining)}"
        ordered += ready
        for part in ready:
            del remaining[part]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_what_its_part_may(module):
    allowed, free = _rules()
    part = _part(module)
    for imported, _ in _imports(MODULES[module]):
        if imported.split(".")[0] == "pipeline" and _part(imported) != part:
            assert _part(imported) in allowed[part], (
                f"{module} imports {imported}: docs/design.md lets `{part}` import only "
                f"{sorted(allowed[part]) or 'nothing'}"
            )
        frameworks_free = part in free or module.removeprefix("pipeline.") in free
        if frameworks_free:
            assert imported.split(".")[0] not in FRAMEWORKS, f"{module} imports {imported}"


def test_no_module_imports_another_in_a_cycle():
    """At the top level (what runs at import), modules form no cycle."""
    graph = {
        module: {
            imported
            for imported, top in _imports(path)
            if top and imported in MODULES and imported != module
        }
        for module, path in MODULES.items()
    }
    # A package's __init__ runs before its modules: importing pipeline.x.y imports pipeline.x.
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*trail, module])
        state[module] = "open"
        for imported in graph[module]:
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_no_module_under_pipeline_is_over_300_lines():
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    too_long = {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not too_long, f"split these along a concept: {too_long}"


def test_importing_the_framework_free_modules_loads_no_framework():
    """What they import at the top level, all the way down, loads no framework either:
    a refusal they decide answers before Keras loads."""
    _, free = _rules()
    modules = sorted(
        module
        for module in MODULES
        if _part(module) in free or module.removeprefix("pipeline.") in free
    )
    probe = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(sorted({'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", (modules, done.stdout)
