"""The benchmark scripts name the project's code they measure: a rename in bot/ or graph/ must not leave one
broken until someone runs it (`long_comments.py` imported a helper renamed in the comment handler)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _project_imports(script: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from bot... / graph... / tests... import name` in the script, nested ones too."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.split(".")[0] in ("bot", "graph", "tests") for alias in node.names]


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_the_project_exists(script):
    missing = []
    for module, name in _project_imports(script):
        found = importlib.import_module(module)
        if not hasattr(found, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script.name} imports names the project no longer has: {missing}"
