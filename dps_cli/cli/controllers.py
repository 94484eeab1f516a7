"""`dps controllers list|show|remove`: the trained controllers in the registry.

The rich tables that describe a controller (held-out metrics, tau sweep) are built here and
shared with `dps train-controller`.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dps_cli.cli.console import stdout_console
from dps_cli.cli.errors import report_errors
from dps_cli.cli.options import RegistryOption

if TYPE_CHECKING:
    from rich.table import Table

    from dps_cli.controllers.card import ControllerCard

app = typer.Typer(
    help="Trained DPS controllers in the registry ($DPS_HOME/controllers by default).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

NameArgument = Annotated[str, typer.Argument(help="Controller name.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command("list")
@report_errors
def list_controllers(registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """List the trained controllers with their kind, model, held-out AUC and recommended tau.

    Example: dps controllers list --registry ./controllers
    """
    from dps_cli.controllers.artifacts import list_controllers as cards_in
    from dps_cli.controllers.artifacts import registry_path

    cards = cards_in(registry)
    if as_json:
        typer.echo(json.dumps([card.to_dict() for card in cards], indent=2))
        return
    if not cards:
        typer.echo(f"No controllers in {registry_path(registry)}.")
        return
    stdout_console().print(registry_table(cards))


@app.command("show")
@report_errors
def show(name: NameArgument, registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """Show a controller's card: inputs, training data, held-out metrics and tau sweep.

    Example: dps controllers show math500-gbdt
    """
    from dps_cli.controllers.artifacts import controller_dir, read_card

    card = read_card(controller_dir(name, registry))
    if as_json:
        typer.echo(json.dumps(card.to_dict(), indent=2))
        return
    render_card(card, stdout_console(), details=True)


@app.command("remove")
@report_errors
def remove(name: NameArgument, registry: RegistryOption = None) -> None:
    """Delete a trained controller from the registry.

    Example: dps controllers remove math500-gbdt
    """
    from dps_cli.controllers.artifacts import remove_controller

    path = remove_controller(name, registry)
    typer.echo(f"Removed controller {name!r} ({path}).")


def render_card(card: ControllerCard, console: Console, details: bool = False) -> None:
    """Print a card: a few facts, the held-out metrics, whether it beats chance, the tau sweep."""
    from rich.text import Text

    from dps_cli.controllers.card import chance_sentence

    facts = f" ({card.kind}) trained on {card.model_id}, task {card.task}"
    console.print(Text.assemble((card.name, "bold"), facts), highlight=False)
    if details:
        layer = (
            "-"
            if card.hidden_layer is None
            else f"layer {card.hidden_layer}, width {card.hidden_size}"
        )
        for line in (
            f"inputs: {', '.join(card.feature_names)}",
            f"hidden states: {layer}; alpha {card.alpha:g}; seed {card.seed}",
            f"training table sha256: {card.training_data_sha256}",
            f"training runs: {', '.join(card.training_runs)}",
            f"created {card.created_at} with dps {card.package_version}",
        ):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(metrics_table(card))
    console.print(chance_sentence(card.name, card.metrics), highlight=False, soft_wrap=True, markup=False)
    if card.tau_sweep.points:
        console.print(tau_table(card))
    for note in (card.metrics.note, card.tau_sweep.note, card.time_model if details else ""):
        if note:
            console.print(note, highlight=False, soft_wrap=True, style="dim", markup=False)


def metrics_table(card: ControllerCard) -> Table:
    """Held-out ROC-AUC and Brier with their 95% intervals over questions, training AUC, log-loss."""
    from rich.table import Table

    m = card.metrics
    table = Table(title="Held-out metrics", caption="[95% bootstrap interval over held-out questions]")
    for column in ("questions", "checkpoints", "enough", "ROC-AUC", "Brier", "train AUC", "log-loss"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row(
        str(m.questions), str(m.rows), str(m.positives), _interval(m.roc_auc, m.roc_auc_lo, m.roc_auc_hi),
        _interval(m.brier, m.brier_lo, m.brier_hi), _num(m.train_roc_auc), _num(m.log_loss),
    )  # fmt: skip
    return table


def tau_table(card: ControllerCard) -> Table:
    """The replayed DPS policy per tau, the recommended tau marked, fixed-k baselines below."""
    from rich.table import Table

    sweep = card.tau_sweep
    table = Table(
        title="Tau sweep", caption=f"replayed on {sweep.pairs} held-out (question, seed) pairs"
    )
    for column in ("tau", "accuracy", "mean k", "time vs k=8"):
        table.add_column(column, justify="right")
    table.add_column("")
    for point in sweep.points:
        mark = "<- recommended" if point.tau == sweep.recommended_tau else ""
        table.add_row(
            f"{point.tau:.1f}", _num(point.accuracy), f"{point.mean_final_k:.2f}",
            _num(point.relative_time), mark, style="bold green" if mark else None,
        )  # fmt: skip
    table.add_section()
    for k, accuracy in sorted(sweep.baseline_accuracy.items()):
        time = _num(sweep.baseline_relative_time[k])
        table.add_row(f"fixed k={k}", _num(accuracy), str(k), time, "")
    return table


def registry_table(cards: list[ControllerCard]) -> Table:
    """One line per controller."""
    from rich.table import Table

    table = Table(title="Controllers", caption="AUC: held-out ROC-AUC [95% interval over questions]")
    for column in ("name", "kind", "model", "task", "hidden", "AUC", "tau", "created"):
        table.add_column(column)
    for card in cards:
        hidden = "-" if card.hidden_layer is None else f"L{card.hidden_layer}/{card.hidden_size}"
        tau = "-" if card.recommended_tau is None else f"{card.recommended_tau:.1f}"
        table.add_row(
            card.name, card.kind, card.model_id, card.task, hidden,
            _interval(card.metrics.roc_auc, card.metrics.roc_auc_lo, card.metrics.roc_auc_hi), tau,
            card.created_at,
        )  # fmt: skip
    return table


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _interval(value: float, lo: float, hi: float) -> str:
    """A value and its interval, e.g. 0.612 [0.480, 0.740]; an undefined interval shows n/a."""
    if math.isnan(value):
        return "n/a"
    bounds = "n/a" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"
    return f"{_num(value)} {bounds}"
