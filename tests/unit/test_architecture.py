"""The layering of STYLE.md holds: a pure domain, and api → services → domain."""
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "setup.cfg"), no_cache=True, no_logo=True) == 0


def test_the_domain_imports_nothing_but_the_standard_library_and_itself():
    third_party = ("flask", "redis", "marshmallow", "requests", "orjson", "itsdangerous", "prometheus_client")
    modules = sorted((ROOT / "wallet_market" / "domain").glob("*.py"))
    assert len(modules) >= 8  # the check below really reads the domain
    for path in modules:
        text = path.read_text()
        for name in third_party:
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path.name} imports {name}"
