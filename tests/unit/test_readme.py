"""The README lists every command and option the command line has, and the tour's files are ignored."""
from __future__ import annotations

import re
from pathlib import Path

import click

from wallet_market.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _option_names(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            names.extend(opt for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--"))
    return names


def _table_row(path: tuple[str, ...]) -> str:
    prefix = "`wallet-market " + " ".join(path)
    rows = [line for line in README.splitlines() if line.startswith("| " + prefix + " ") or line.startswith("| " + prefix + "`")]
    assert rows, f"no row for wallet-market {' '.join(path)} in the README's command table"
    return rows[0]


def test_the_readme_lists_every_command_and_option():
    listed = list(_commands(main))
    assert len(listed) >= 12
    for path, command in listed:
        row = _table_row(path)
        for option in _option_names(command):
            assert re.search(re.escape(option) + r"\b", row), f"{' '.join(path)}: {option} is not in {row!r}"
    for option in _option_names(main):
        assert option in README


def test_the_tour_writes_into_an_ignored_scratch_directory():
    tour = README[README.index("## A short tour"):README.index("## What it does")]
    written = re.findall(r"(?:--csv|--chart|-o|--output|>)\s+(\S+)", tour)
    assert written and all(path.startswith("tour/") for path in written), written
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "tour/" in ignored and "var/" in ignored
