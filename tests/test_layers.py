"""The package's layers: data/ knows no algorithm and no recipe; recipes register their ids into data/'s registry."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

# Each layer and the lit_offrl packages it may import (the layers below it). The CLI and tools on top import all.
ALLOWED = {
    "data": {"data", "errors"},
    "nets": {"nets"},
    "evaluation": {"evaluation", "data", "errors"},
    "algos": {"algos", "nets", "data", "evaluation", "errors"},
    "recipes": {"recipes", "algos", "nets", "data", "evaluation", "callbacks", "errors"},
}


def imported_lit_offrl_packages(path) -> set[str]:
    """The lit_offrl subpackages a file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "lit_offrl" and len(parts) > 1:
                found.add(parts[1])
            elif parts == ["lit_offrl"] and isinstance(node, ast.ImportFrom):
                found.update(alias.name for alias in node.names)
    return found


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((REPO / "lit_offrl" / layer).rglob("*.py")):
            extra = imported_lit_offrl_packages(path) - allowed
            if extra:
                wrong.append(f"{path.relative_to(REPO)} imports lit_offrl.{', lit_offrl.'.join(sorted(extra))}")
    assert not wrong, "\n".join(wrong)


def test_importing_lit_offrl_registers_every_recipe_and_the_data_layer_alone_registers_none():
    code = ("import lit_offrl.data.minari_io, sys; from lit_offrl.data import registry; n = len(registry.RECIPES); "
            "assert not any(m.startswith(('lit_offrl.algos', 'lit_offrl.recipes')) for m in sys.modules), n; "
            "import lit_offrl; print(n, len(registry.RECIPES))")
    # `import lit_offrl.data.minari_io` runs lit_offrl/__init__ first, which imports the recipes: so the first check
    # runs the data modules through importlib without the package __init__ (a fresh interpreter, no lit_offrl import).
    code = ("import importlib.util, sys, types; pkg = types.ModuleType('lit_offrl'); "
            f"pkg.__path__ = [{str(REPO / 'lit_offrl')!r}]; sys.modules['lit_offrl'] = pkg; " + code.replace(
                "import lit_offrl;", "del sys.modules['lit_offrl']; import lit_offrl;"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = map(int, result.stdout.split())
    assert before == 0 and after >= 27  # 12 pointmaze/maze2d + 15 locomotion ids, and any later family
