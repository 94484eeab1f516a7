"""The card of a trained controller: what it was trained on, how well it did, how to feed it.

A card is stored as ``card.json`` next to the model file. The DPS driver reads it to know which
features to compute (hidden states of which layer, question embedding or not) and
`artifacts.check_compatible` compares it with the run about to start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dps_cli.errors import UserError

#: 1.1 added the held-out intervals and the training AUC to `HeldOutMetrics` (1.0 cards read
#: with those fields as NaN, shown as n/a).
CARD_SCHEMA_VERSION = "1.1"
#: The AUC of a controller that ranks no better than a coin.
CHANCE_AUC = 0.5

TIME_MODEL = (
    "Replay time is approximate: along the replayed k path, each segment between two checkpoints "
    "costs the question_time_sec elapsed between those checkpoints in the fixed-k run at the k in "
    "force, and the final k adds its remaining time (wall_time_s minus its time at the last "
    "checkpoint reached). A real DPS chain continues the same trajectory instead of switching "
    "runs, and its model load and batching differ."
)


@dataclass(frozen=True)
class HeldOutMetrics:
    """Classification quality on the held-out questions (label: the current k is enough).

    ``*_lo``/``*_hi`` are 95% bootstrap intervals resampling held-out questions (see
    `dps_cli.controllers.evidence`); ``train_roc_auc`` is the AUC on the training rows. All are
    NaN when undefined or when the card predates them.
    """

    roc_auc: float
    brier: float
    log_loss: float
    rows: int
    questions: int
    positives: int
    note: str = ""
    roc_auc_lo: float = math.nan
    roc_auc_hi: float = math.nan
    brier_lo: float = math.nan
    brier_hi: float = math.nan
    train_roc_auc: float = math.nan

    @property
    def verdict(self) -> str:
        """How the held-out AUC interval sits against 0.5: better, worse, chance or unknown.

        "better"/"worse": the interval lies wholly above/below 0.5; "chance": it contains 0.5;
        "unknown": there is no interval.
        """
        lo, hi = self.roc_auc_lo, self.roc_auc_hi
        if math.isnan(lo) or math.isnan(hi):
            return "unknown"
        if lo > CHANCE_AUC:
            return "better"
        return "worse" if hi < CHANCE_AUC else "chance"

    @property
    def beats_chance(self) -> bool:
        """Whether the held-out AUC interval lies wholly above 0.5."""
        return self.verdict == "better"


def chance_sentence(name: str, metrics: HeldOutMetrics) -> str:
    """One plain sentence on whether the controller ``name`` ranks better than chance."""
    auc = _fmt(metrics.roc_auc)
    interval = f"[{_fmt(metrics.roc_auc_lo)}, {_fmt(metrics.roc_auc_hi)}]"
    over = f"over {metrics.questions} held-out questions"
    verdict = metrics.verdict
    if verdict == "better":
        return f"{name}: held-out ROC-AUC {auc} {interval} {over} lies above 0.5: it beats chance."
    if verdict == "chance":
        return (
            f"{name}: held-out ROC-AUC {auc} {interval} {over} contains 0.5, so this controller "
            "is no better than chance at this scale."
        )
    if verdict == "worse":
        return (
            f"{name}: held-out ROC-AUC {auc} {interval} {over} lies below 0.5, so this controller "
            "is no better than chance at this scale (it ranks worse than a coin)."
        )
    return (
        f"{name}: held-out ROC-AUC {auc} with no interval (n/a: too few held-out questions or "
        "classes, or a card written before intervals), so there is no evidence that this "
        "controller is better than chance."
    )


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


@dataclass(frozen=True)
class TauPoint:
    """The replayed DPS policy at one threshold tau, over held-out (question, seed) pairs."""

    tau: float
    accuracy: float
    mean_final_k: float
    relative_time: float  # replayed time / time of fixed k=8


@dataclass(frozen=True)
class TauSweep:
    """The replay over all taus, with fixed-k baselines on the same pairs."""

    points: tuple[TauPoint, ...]
    recommended_tau: float | None
    baseline_accuracy: Mapping[int, float]  # fixed k -> accuracy on the replayed pairs
    baseline_relative_time: Mapping[int, float]  # fixed k -> time / time of fixed k=8
    pairs: int
    skipped_pairs: int = 0
    note: str = ""


@dataclass(frozen=True)
class ControllerCard:
    """Everything stored about a trained controller besides its weights."""

    name: str
    kind: str
    feature_names: tuple[str, ...]
    hidden_layer: int | None
    hidden_size: int | None
    question_embedding_size: int | None
    model_id: str
    task: str
    alpha: float
    training_data_sha256: str
    training_runs: tuple[str, ...]
    metrics: HeldOutMetrics
    tau_sweep: TauSweep
    seed: int
    created_at: str
    package_version: str
    model_file: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    split_questions: Mapping[str, int] = field(default_factory=dict)
    time_model: str = TIME_MODEL
    card_schema_version: str = CARD_SCHEMA_VERSION

    @property
    def recommended_tau(self) -> float | None:
        """The tau the replay recommends (see `replay.recommend_tau`)."""
        return self.tau_sweep.recommended_tau

    @property
    def uses_hidden(self) -> bool:
        """Whether the driver must record layer-`hidden_layer` hidden states for this controller."""
        return self.hidden_size is not None

    @property
    def uses_question_embedding(self) -> bool:
        """Whether the driver must pass the prompt's layer-`hidden_layer` mean hidden state."""
        return self.question_embedding_size is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN metrics become null (JSON has no NaN)."""
        data = asdict(self)
        data["recommended_tau"] = self.recommended_tau
        data["tau_sweep"]["baseline_accuracy"] = {
            str(k): v for k, v in self.tau_sweep.baseline_accuracy.items()
        }
        data["tau_sweep"]["baseline_relative_time"] = {
            str(k): v for k, v in self.tau_sweep.baseline_relative_time.items()
        }
        cleaned: dict[str, Any] = _nan_to_none(data)
        return cleaned

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> ControllerCard:
        """Rebuild a card; refuses a newer major card version or a card missing fields."""
        version = str(data.get("card_schema_version", "0"))
        ours = int(CARD_SCHEMA_VERSION.split(".")[0])
        if int(version.split(".")[0]) > ours:
            raise UserError(
                f"Controller card {source} has version {version}, newer than this dps "
                f"understands ({CARD_SCHEMA_VERSION}).",
                "Upgrade dps to load it.",
            )
        try:
            sweep = data["tau_sweep"]
            return cls(
                name=data["name"],
                kind=data["kind"],
                feature_names=tuple(data["feature_names"]),
                hidden_layer=data["hidden_layer"],
                hidden_size=data["hidden_size"],
                question_embedding_size=data["question_embedding_size"],
                model_id=data["model_id"],
                task=data["task"],
                alpha=float(data["alpha"]),
                training_data_sha256=data["training_data_sha256"],
                training_runs=tuple(data["training_runs"]),
                metrics=HeldOutMetrics(**_none_to_nan(data["metrics"])),
                tau_sweep=TauSweep(
                    points=tuple(TauPoint(**p) for p in sweep["points"]),
                    recommended_tau=sweep["recommended_tau"],
                    baseline_accuracy={int(k): v for k, v in sweep["baseline_accuracy"].items()},
                    baseline_relative_time={
                        int(k): v for k, v in sweep["baseline_relative_time"].items()
                    },
                    pairs=sweep["pairs"],
                    skipped_pairs=sweep.get("skipped_pairs", 0),
                    note=sweep.get("note", ""),
                ),
                seed=int(data["seed"]),
                created_at=data["created_at"],
                package_version=data["package_version"],
                model_file=data["model_file"],
                settings=dict(data.get("settings", {})),
                split_questions=dict(data.get("split_questions", {})),
                time_model=data.get("time_model", TIME_MODEL),
                card_schema_version=version,
            )
        except (KeyError, TypeError) as err:
            raise UserError(
                f"Controller card {source} is incomplete or malformed ({err}).",
                "Retrain the controller or remove it with 'dps controllers remove'.",
            ) from None


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _none_to_nan(metrics: Mapping[str, Any]) -> dict[str, Any]:
    floats = (
        "roc_auc", "brier", "log_loss", "roc_auc_lo", "roc_auc_hi", "brier_lo", "brier_hi",
        "train_roc_auc",
    )  # fmt: skip
    return {k: (math.nan if k in floats and v is None else v) for k, v in metrics.items()}
