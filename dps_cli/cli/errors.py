"""Turns the library's deliberate errors into one sentence on stderr and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from dps_cli.errors import DpsError, Interrupted, UserError

P = ParamSpec("P")
R = TypeVar("R")

USAGE_EXIT = 2
FAILURE_EXIT = 1


def report_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so `UserError` exits 2 and `DpsError` exits 1, both without a traceback.

    A stop signal that `dps sample` turned into `Interrupted` prints its one line and exits with
    128 + the signal number (143 for SIGTERM, 130 for SIGINT).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            _print_error(str(err))
            raise typer.Exit(USAGE_EXIT) from None
        except DpsError as err:
            _print_error(str(err))
            raise typer.Exit(FAILURE_EXIT) from None
        except Interrupted as stop:
            Console(stderr=True, highlight=False, soft_wrap=True).print(stop.message, markup=False)
            raise typer.Exit(stop.exit_code) from None
        except KeyboardInterrupt:
            _print_error("Interrupted; completed work is saved and a rerun resumes it.")
            raise typer.Exit(130) from None

    return wrapper


def _print_error(message: str) -> None:
    """``error: <message>`` on stderr; the message is printed literally, never read as rich markup,
    so paths such as ``runs/[bold]x`` and hints such as ``pip install 'dps-cli[vllm]'`` survive."""
    from rich.text import Text

    line = Text.assemble(("error:", "bold red"), " ", message)
    Console(stderr=True, highlight=False, soft_wrap=True).print(line)
