"""The layering rules of docs/architecture.md, read off the code.

* ``gridhub/core`` (the kernel) imports nothing of the hub outside itself;
* ``streams/`` and ``connectors/`` (the domains) import the kernel and each other, never the
  tool wing (``gridhub.<anything but core>``) nor ``bench``;
* importing a pure module builds no Faust app and loads no Kafka or ClickHouse client.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HUB_PACKAGES = ("gridhub", "streams", "connectors", "bench")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from gridhub import settings`` imports gridhub.settings
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _allowed_for_domain(module: str) -> bool:
    top = module.split(".")[0]
    if top not in HUB_PACKAGES:
        return True  # stdlib and third-party
    if top in ("streams", "connectors"):
        return True
    if top == "bench":
        return False
    return module == "gridhub" or module == "gridhub.core" or module.startswith("gridhub.core.")


def _violations(folders: list[str], allowed: object) -> list[str]:
    out = []
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, module in _imports(path):
                if not allowed(module):  # type: ignore[operator]
                    out.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return out


def test_domains_import_only_the_kernel() -> None:
    assert _violations(["streams", "connectors"], _allowed_for_domain) == []


def test_kernel_imports_nothing_of_the_hub_outside_itself() -> None:
    def allowed(module: str) -> bool:
        top = module.split(".")[0]
        return top not in HUB_PACKAGES or module in ("gridhub", "gridhub.core") or module.startswith("gridhub.core.")

    assert _violations(["gridhub/core"], allowed) == []


def test_the_rule_catches_a_tool_import(tmp_path: Path) -> None:
    """The checker itself can fail: a function-level import of the tool wing is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from gridhub.ops.topics import ensure_cmd\n    from gridhub import demo\n")
    assert [m for _, m in _imports(bad) if not _allowed_for_domain(m)] == [
        "gridhub.ops.topics", "gridhub.ops.topics.ensure_cmd", "gridhub.demo"]


#: The pure modules: importable by the evaluation, the benchmarks and the simulator without
#: building the Faust app or opening a client.
PURE_MODULES = [
    "gridhub.core.settings", "gridhub.core.codec", "gridhub.core.topics", "gridhub.core.dlq",
    "gridhub.core.reference", "gridhub.core.agencies", "gridhub.core.errors", "gridhub.core.timeutil",
    "streams.ingest.normalize", "streams.ingest.taxonomy", "gridhub.core.pii",
    "streams.fusion.engine", "streams.fusion.rules", "streams.fusion.text", "streams.fusion.geo",
    "streams.routing.rules", "streams.routing.lifecycle",
    "streams", "streams.ingest", "streams.fusion", "streams.routing",
    "gridhub.evaluation.fusion",
]
#: What must not be loaded by importing them.
HEAVY = ("faust", "mode", "aiokafka", "kafka", "clickhouse_driver", "streams.app")


@pytest.mark.parametrize("module", PURE_MODULES)
def test_importing_a_pure_module_does_no_work(module: str) -> None:
    code = (f"import sys, json; import {module}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_side_effect_check_can_fail() -> None:
    """Importing the agents module does build the app: the check above would see it."""
    code = "import sys; import streams.fusion.agents; print('faust' in sys.modules and 'streams.app' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr
