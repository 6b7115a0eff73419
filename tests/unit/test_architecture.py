"""The layers hold: checked by import-linter (contracts in setup.cfg) and, for the domain, by reading its imports."""
import ast
import sys
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "setup.cfg"), no_cache=True, no_logo=True) == 0


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_domain_imports_nothing_but_the_standard_library_and_itself():
    modules = sorted((ROOT / "wallet_market" / "domain").glob("*.py"))
    assert len(modules) >= 8  # the check below really reads the domain
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for path in modules:
        outside = _imported_top_levels(path) - allowed
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_the_check_of_the_domain_would_see_a_third_party_import(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text("import json\nfrom redis import Redis\n")
    assert _imported_top_levels(leaky) - set(sys.stdlib_module_names) == {"redis"}
