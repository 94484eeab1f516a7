"""The `dps` Typer app: registers one thin command per module."""

from __future__ import annotations

import importlib

import typer

from dps_cli.cli.errors import report_errors

app = typer.Typer(
    name="dps",
    help="Power sampling and Dynamic Power Sampling (DPS) for LLM reasoning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

# (command name, module under dps_cli.cli, function) — one explicit table, no scanning.
COMMANDS: list[tuple[str, str, str]] = [
    ("sample", "sample", "sample"),
    ("collect", "collect", "collect"),
    ("train-controller", "train", "train_controller"),
    ("evaluate", "evaluate", "evaluate"),
    ("passk", "passk", "passk"),
    ("reproduce", "reproduce", "reproduce"),
    ("doctor", "doctor", "doctor"),
]

for _name, _module, _attr in COMMANDS:
    _fn = getattr(importlib.import_module(f"dps_cli.cli.{_module}"), _attr)
    app.command(_name)(report_errors(_fn))

_controllers = importlib.import_module("dps_cli.cli.controllers")
app.add_typer(_controllers.app, name="controllers")


def main() -> None:
    """Console-script entry point."""
    app()
