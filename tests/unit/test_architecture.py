"""The layers hold: checked by import-linter (contracts in setup.cfg) and, for the domain, by reading its imports."""
import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


# import-linter configures logging for its whole process (``dictConfig``, which disables every
# logger already made, the service's included), so it runs in a process of its own.
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))"


def test_import_contracts_are_kept():
    run = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


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
