"""The import graph of the project's own modules: imports run one way, in floors, without circles.

Floors: `rag/` is the library and imports none of the others; `ingest/` builds on it; `eval/` and `api/` (with
`app.py`, its entry) build on both and not on each other. Inside `rag/`, nothing at run time imports
`rag/provision/` (setup-time only); the `python -m rag models` command (rag/__main__.py) may. No project module
is imported inside a function: an import tucked into a function is how a circle gets hidden. Third-party
imports inside functions (torch, onnxruntime, gradio ...) are fine: they keep start-up fast.

Edges are read from the source with `ast` (nothing is imported), imports under `if TYPE_CHECKING:` included.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag", "ingest", "eval", "api")
ENTRY_MODULES = ("app",)
# what each top-level part may import (itself included)
ALLOWED: dict[str, frozenset[str]] = {
    "rag": frozenset({"rag"}),
    "ingest": frozenset({"rag", "ingest"}),
    "eval": frozenset({"rag", "ingest", "eval"}),
    "api": frozenset({"rag", "ingest", "api"}),
    "app": frozenset({"rag", "ingest", "api", "app"}),
}
SETUP_ONLY = "rag.provision"
MAY_IMPORT_SETUP = frozenset({"rag.__main__"})  # the `python -m rag models` command


@dataclass(frozen=True)
class Edge:
    importer: str
    target: str
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.importer}:{self.line} imports {self.target}{where}"


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name → file, for every module of the project's packages and entry modules under `root`."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    for entry in ENTRY_MODULES:
        if (root / f"{entry}.py").is_file():
            modules[entry] = root / f"{entry}.py"
    return modules


def import_edges(root: Path) -> list[Edge]:
    """Every import of one project module by another (parent packages a dotted import passes through are not
    counted: they are not what the importer asked for)."""
    modules = project_modules(root)
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _imports(tree):
            for target in _targets(node, name, is_package, modules):
                edges.append(Edge(name, target, node.lineno, in_function))
    return edges


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, nested)

    visit(tree, False)
    return found


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:  # relative: from the importer's package, one level up per extra dot
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    targets = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    if base in modules and len(targets) < len(node.names):  # some names are attributes of `base` itself
        targets.add(base)
    return targets


def _part(module: str) -> str:
    return module.split(".")[0]


def upward_imports(edges: list[Edge]) -> list[Edge]:
    return [edge for edge in edges if _part(edge.target) not in ALLOWED[_part(edge.importer)]]


def setup_imports_at_run_time(edges: list[Edge]) -> list[Edge]:
    def is_setup(module: str) -> bool:
        return module == SETUP_ONLY or module.startswith(SETUP_ONLY + ".")

    return [
        edge
        for edge in edges
        if is_setup(edge.target) and not is_setup(edge.importer) and edge.importer not in MAY_IMPORT_SETUP
    ]


def imports_in_functions(edges: list[Edge]) -> list[Edge]:
    return [edge for edge in edges if edge.in_function]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import circles: each group of modules that reach one another through imports (a strongly connected
    component larger than one, or a module importing itself), sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(module: str) -> None:  # Tarjan's algorithm; the graph has ~100 nodes, recursion is fine
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in graph[module]:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return groups


# ---- the project itself ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(PROJECT_ROOT)


def test_the_graph_is_read(edges: list[Edge]) -> None:
    """Guards the checks below against passing on an empty graph."""
    importers = {edge.importer for edge in edges}
    assert {"rag.service", "ingest.pipeline", "eval.runner", "app"} <= importers
    assert any(edge.importer == "rag.service" and edge.target == "rag.config" for edge in edges)


def test_no_import_circles(edges: list[Edge]) -> None:
    assert cycles(edges) == []


def test_imports_only_go_down_the_floors(edges: list[Edge]) -> None:
    assert [str(edge) for edge in upward_imports(edges)] == []


def test_nothing_at_run_time_imports_provisioning(edges: list[Edge]) -> None:
    assert [str(edge) for edge in setup_imports_at_run_time(edges)] == []


def test_no_project_module_is_imported_inside_a_function(edges: list[Edge]) -> None:
    assert [str(edge) for edge in imports_in_functions(edges)] == []


# ---- the checks catch what they are for (a miniature project) ------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_a_circle_hidden_in_a_function_is_still_a_circle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "rag/__init__.py": "",
            "rag/models.py": "def provision():\n    from rag import gemma\n",
            "rag/gemma.py": "from rag.models import provision\n",
            "rag/store.py": "from .models import provision\n",
        },
    )
    edges = import_edges(tmp_path)
    assert cycles(edges) == [["rag.gemma", "rag.models"]]
    assert [str(edge) for edge in imports_in_functions(edges)] == ["rag.models:2 imports rag.gemma (inside a function)"]
    assert Edge("rag.store", "rag.models", 1, False) in edges  # relative imports resolve


def test_upward_and_setup_imports_are_named(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "rag/__init__.py": "",
            "rag/service.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ingest.pipeline import x\n"
            "from rag.provision.models import provision\n",
            "rag/__main__.py": "from rag.provision import models\n",
            "rag/provision/__init__.py": "",
            "rag/provision/models.py": "from rag.service import y\n",
            "ingest/__init__.py": "",
            "ingest/pipeline.py": "import eval.runner\n",
            "eval/__init__.py": "",
            "eval/runner.py": "from ingest import pipeline\nimport api.routes\n",
            "api/__init__.py": "",
            "api/routes.py": "from eval import runner\nfrom rag import service\n",
            "app.py": "from api import routes\n",
        },
    )
    edges = import_edges(tmp_path)
    assert sorted(str(edge) for edge in upward_imports(edges)) == [
        "api.routes:1 imports eval.runner",
        "eval.runner:2 imports api.routes",
        "ingest.pipeline:1 imports eval.runner",
        "rag.service:3 imports ingest.pipeline",
    ]
    assert [str(edge) for edge in setup_imports_at_run_time(edges)] == ["rag.service:4 imports rag.provision.models"]
