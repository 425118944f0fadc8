"""The code mirrors the suite (issue 12): core imports no service, no service imports another, no cycles,
modules stay small, and every script a service sends is a file the linters see.

Imports are read with `ast` (what runs when the module loads); those under `if TYPE_CHECKING:` are types
only and never run, so they are left out of the graph.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from components.core.scripts import PROGRESS, STEPLOG, script
from components.services.chat import component as chat
from components.services.hub import component as hub
from components.services.hub import frontend as hub_frontend
from components.services.hub import steps as hub_steps
from components.suite import SERVICE_COMPONENTS

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"
SERVICE_DIRS = sorted(p.name for p in (COMPONENTS / "services").iterdir() if (p / "__init__.py").exists())


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Modules imported when the module runs (at top level or inside functions), TYPE_CHECKING left out."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {
        _module_name(p): p
        for p in COMPONENTS.rglob("*.py")
        if "scripts" not in p.relative_to(COMPONENTS).parts  # sent to containers, never imported
    }
    return {
        name: {m for m in _runtime_imports(ast.parse(path.read_text())) if m in modules}
        for name, path in modules.items()
    }


GRAPH = _graph()


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[1] == "services" and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def test_the_graph_sees_the_tree():
    # A walker that found nothing would pass every check below.
    expected = {"components.core.container", "components.services.hub.component", "components.config"}
    assert expected <= set(GRAPH)
    assert "components.core.container" in GRAPH["components.core.deployment"]


def test_core_imports_only_core():
    for module, imports in GRAPH.items():
        if module.startswith("components.core"):
            outside = {m for m in imports if not m.startswith("components.core")}
            assert not outside, f"{module} imports {sorted(outside)}"


def test_no_service_imports_another_or_the_suite():
    for module, imports in GRAPH.items():
        if not module.startswith("components.services."):
            continue
        own = _package(module)
        for imported in imports:
            if imported.startswith("components.services."):
                assert _package(imported) == own, f"{module} imports {imported}"
            assert imported not in {"components.suite", "components.config"}, f"{module} imports {imported}"


def test_edge_backup_and_monitoring_import_no_service():
    for module, imports in GRAPH.items():
        if module.startswith(("components.edge", "components.backup", "components.monitoring")):
            services = {m for m in imports if m.startswith("components.services")}
            assert not services, f"{module} imports {sorted(services)}"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported] if imported in path else [module, imported]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                walk(imported, [*path, imported])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])


def test_one_package_per_service_in_the_registry():
    assert sorted(SERVICE_COMPONENTS) == SERVICE_DIRS == ["agent", "chat", "flow", "hub"]
    for service, component in SERVICE_COMPONENTS.items():
        assert component.__module__ == f"components.services.{service}.component"
        assert (COMPONENTS / "services" / service / "config.py").exists()


def test_modules_stay_small():
    for path in COMPONENTS.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 520, f"{path.relative_to(ROOT)} has {lines} lines (split it, issue 12)"


def test_the_program_sends_the_script_files():
    # The same text, loaded once at import: what the linters check is what reaches the container.
    sent = {
        ("hub", "company.py"): hub_steps.COMPANY,
        ("hub", "new_site.py"): hub_steps.NEW_SITE,
        ("hub", "configure.py"): hub.CONFIGURE,
        ("hub", "step.sh"): hub_steps.STEP_HELPERS,
        ("hub", "migrate.sh"): hub_steps.MIGRATE,
        ("hub", "frontend.sh"): hub_frontend.FRONTEND,
        ("hub", "probe-session.sh"): hub.PROBE_SESSION,
        **{("hub", f"probe-{n.removeprefix('hub-')}.sh"): text for n, text in hub.PROBES.items()},
        ("chat", "bootstrap.rb"): chat.BOOTSTRAP,
    }
    for (service, name), text in sent.items():
        assert (COMPONENTS / "services" / service / "scripts" / name).read_text() == text, name
    assert script(hub_steps.__name__, "company.py") == hub_steps.COMPANY
    core_scripts = COMPONENTS / "core" / "scripts"
    assert (core_scripts / "steplog.sh").read_text() == STEPLOG  # progress.sh uses its log helpers
    assert (core_scripts / "steplog.sh").read_text() + (core_scripts / "progress.sh").read_text() == PROGRESS


def test_python_scripts_compile_and_shell_and_ruby_pass_their_checkers():
    files = sorted((COMPONENTS / "services").glob("*/scripts/*"))
    assert {f.suffix for f in files} >= {".py", ".sh", ".rb"}
    for path in files:
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
        elif path.suffix == ".sh":
            assert shutil.which("shellcheck"), "shellcheck is installed by tools/run-tests.sh"
            run = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
            assert run.returncode == 0, run.stdout
        elif path.suffix == ".rb":
            assert shutil.which("ruby"), "ruby is installed by tools/run-tests.sh"
            run = subprocess.run(["ruby", "-c", str(path)], capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
