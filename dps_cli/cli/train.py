"""`dps train-controller`: fit a DPS controller on a collect table and store it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dps_cli.cli.console import stdout_console
from dps_cli.cli.options import RegistryOption
from dps_cli.controllers.kinds import CONTROLLER_KINDS

#: The registry's kinds as the command's choices.
KindChoice = Enum("KindChoice", {name: name for name in CONTROLLER_KINDS.names()}, type=str)  # type: ignore[misc]


def train_controller(
    kind: Annotated[
        KindChoice,
        typer.Argument(
            help="gbdt: CatBoost on the scalar features; mlp-h: MLP on scalars + hidden state; "
            "mlp-hq: MLP on scalars + hidden state + question embedding.",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path,
        typer.Option("--data", help="Training table written by `dps collect`.", show_default=False),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Registry name (default: the kind).")
    ] = None,
    registry: RegistryOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the split and the training (0 to 2147483647).")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a controller of the same name.")
    ] = False,
) -> None:
    """Train a DPS controller, report it on held-out questions, and save it in the registry.

    Splits by question; the tau sweep replays DPS on the test questions' fixed-k runs.

    Example: dps train-controller gbdt --data table.parquet --name math500-gbdt
    """
    from dps_cli.cli.controllers import render_card
    from dps_cli.pipeline.train import train_controller as train

    with Console(stderr=True).status(f"Training a {kind.value} controller..."):
        report = train(kind.value, data, name, registry_dir=registry, seed=seed, force=force)
    out = stdout_console()
    render_card(report.card, out)
    tau = report.card.recommended_tau
    out.print(f"Saved controller {report.card.name!r} to {report.path}.", highlight=False, markup=False)
    if tau is not None:
        out.print(
            f"Use it with: dps sample --method dps --controller {report.card.name} --tau {tau:.1f}",
            highlight=False,
            markup=False,
        )
