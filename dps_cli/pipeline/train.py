"""Train a DPS controller from a collect table and store it in the controller registry.

from dps_cli.pipeline.train import train_controller
report = train_controller("gbdt", Path("table.parquet"), "math500-gbdt", seed=0)
report.card.metrics.roc_auc, report.card.recommended_tau
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dps_cli
from dps_cli.config import MAX_SEED
from dps_cli.controllers.artifacts import ensure_name_free, registry_path, save_controller
from dps_cli.controllers.card import ControllerCard
from dps_cli.controllers.features import feature_names
from dps_cli.controllers.fitting import TrainSettings
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from dps_cli.controllers.table import read_table
from dps_cli.controllers.training import fit_and_evaluate
from dps_cli.errors import UserError
from dps_cli.runs.atomic import check_output_dir

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class TableIdentity:
    """The one task, model, alpha and hidden layer a training table may hold."""

    task: str
    model: str
    alpha: float
    hidden_layer: int | None


@dataclass(frozen=True)
class TrainReport:
    """The stored controller's card and where it lives."""

    card: ControllerCard
    path: Path


def train_controller(
    kind: str,
    data: Path,
    name: str | None = None,
    registry_dir: Path | None = None,
    seed: int = 0,
    force: bool = False,
    settings: TrainSettings | None = None,
) -> TrainReport:
    """Fit ``kind`` on the table at ``data``, measure it on held-out questions, save it as ``name``.

    Args:
        kind: a controller kind (``gbdt``, ``mlp-h``, ``mlp-hq``).
        data: a Parquet table written by `dps_cli.pipeline.collect.collect`.
        name: registry name; defaults to the kind.
        registry_dir: controller registry directory (default: `dps_cli.paths.controllers_dir()`).
        seed: seeds the question split, weight init, batch order and CatBoost.
        force: replace an existing controller of the same name.
        settings: training hyper-parameters; its seed is replaced by ``seed``.

    """
    kind_spec = CONTROLLER_KINDS.get(kind)
    name = name or kind
    if not 0 <= seed <= MAX_SEED:  # numpy, torch and CatBoost each refuse a different range
        raise UserError(f"--seed {seed} must lie between 0 and {MAX_SEED}.")
    ensure_name_free(name, registry_dir, force)  # fail before training, not after
    flag = "The controller registry" if registry_dir is None else "--registry"
    check_output_dir(registry_path(registry_dir), flag)
    settings = replace(settings or TrainSettings(), seed=seed)
    frame = read_table(data)
    identity = _table_identity(frame, data)
    result = fit_and_evaluate(kind, frame, settings)
    model = result.model
    card = ControllerCard(
        name=name,
        kind=kind,
        feature_names=feature_names(model.hidden_size, model.question_embedding_size),
        hidden_layer=identity.hidden_layer if kind_spec.uses_hidden else None,
        hidden_size=model.hidden_size,
        question_embedding_size=model.question_embedding_size,
        model_id=identity.model,
        task=identity.task,
        alpha=identity.alpha,
        training_data_sha256=file_sha256(data),
        training_runs=tuple(sorted(frame["run_id"].unique().to_list())),
        metrics=result.metrics,
        tau_sweep=result.sweep,
        seed=seed,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        package_version=dps_cli.__version__,
        model_file=kind_spec.model_file,
        settings=_settings_dict(settings),
        split_questions={
            "train": len(result.split.train),
            "val": len(result.split.val),
            "test": len(result.split.test),
        },
    )
    path = save_controller(model, card, registry_dir, force)
    return TrainReport(card=card, path=path)


def file_sha256(path: Path) -> str:
    """Fingerprint of the training table, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _table_identity(frame: pl.DataFrame, data: Path) -> TableIdentity:
    """The one task, model, alpha and hidden layer of the table; refuses a table that mixes them."""
    if frame.height == 0:
        raise UserError(f"Training table {data} has no rows.", "Collect runs with samples first.")
    identity: dict[str, Any] = {}
    for column in ("task", "model", "alpha", "hidden_layer"):
        values = frame[column].unique().to_list()
        if len(values) > 1:
            raise UserError(
                f"Training table {data} mixes several values of {column}: "
                f"{', '.join(str(v) for v in sorted(values, key=str))}.",
                "Collect one table per task, model, alpha and hidden layer.",
            )
        identity[column] = values[0]
    return TableIdentity(
        task=str(identity["task"]),
        model=str(identity["model"]),
        alpha=float(identity["alpha"]),
        hidden_layer=None if identity["hidden_layer"] is None else int(identity["hidden_layer"]),
    )


def _settings_dict(settings: TrainSettings) -> dict[str, object]:
    data = asdict(settings)
    data["mlp_hidden_units"] = list(settings.mlp_hidden_units)
    return data
