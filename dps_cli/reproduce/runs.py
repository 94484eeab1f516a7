"""What `dps reproduce` runs and where: its options, the run and controller names, the configs.

Imports nothing of the reproduction itself, so the stages (`stages`), the report
(`report`), the Slurm submission (`slurm`) and the command line all read the
same names from here. Paths default under ``runs/reproduce-<task>-<profile>``; an earlier run
directory given as ``--out-dir`` is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps_cli.config import SampleConfig
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from dps_cli.errors import UserError
from dps_cli.reproduce.profiles import Profile
from dps_cli.tasks import get_task

STAGES = ("sample-train", "collect-train", "sample-test", "report")
TABLE_NAME = "train-table.parquet"
TIMINGS_NAME = "timings.json"
DEFAULT_TASK = "arith"
#: Tasks the reproduction is defined for: graded locally and with enough questions for its split.
REPRODUCE_TASKS = ("arith", "math500")
DEFAULT_PROFILE = "cpu"
DEFAULT_REPORTS = Path("reports")


def method_name(kind: str) -> str:
    """The table's name of DPS with a controller of ``kind``, e.g. ``DPS-MLP-H``."""
    return f"DPS-{kind.upper()}"


@dataclass(frozen=True)
class ReproduceOptions:
    """What to reproduce, where; paths default under ``runs/reproduce-<task>-<profile>``."""

    task: str
    profile: Profile
    model: str | None = None
    out_dir: Path | None = None
    reports_dir: Path = DEFAULT_REPORTS
    registry: Path | None = None
    device: str = "auto"
    #: Extra ``#SBATCH`` options for every Slurm job (``--sbatch KEY=VALUE``); see pipeline.slurm.
    sbatch: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in REPRODUCE_TASKS:
            raise UserError(f"--task {self.task} cannot be reproduced: the pipeline is defined for "
                            f"{' and '.join(REPRODUCE_TASKS)}.", "Use `dps sample` and `dps evaluate` for other tasks.")

    @property
    def model_id(self) -> str:
        return self.model or self.profile.model

    @property
    def out(self) -> Path:
        return self.out_dir or Path("runs") / f"reproduce-{self.task}-{self.profile.name}"

    @property
    def registry_dir(self) -> Path:
        """The reproduction's own controller registry, so it never touches the user's."""
        return self.registry or self.out / "controllers"

    @property
    def table_path(self) -> Path:
        return self.out / TABLE_NAME

    @property
    def kinds(self) -> list[str]:
        """The controller kinds compared, in the table's order."""
        return CONTROLLER_KINDS.names()


def reproduce_argv(options: ReproduceOptions) -> list[str]:
    """The options of ``dps reproduce`` that rebuild ``options`` (paths as given, ``--sbatch`` too)."""
    argv = [
        "--task", options.task, "--profile", options.profile.name, "--model", options.model_id,
        "--out-dir", str(options.out), "--reports-dir", str(options.reports_dir),
        "--registry", str(options.registry_dir), "--device", options.device,
    ]  # fmt: skip
    for key, value in options.sbatch.items():
        argv += ["--sbatch", key if value is None else f"{key}={value}"]
    return argv


def controller_name(task: str, kind: str) -> str:
    """Registry name of the reproduction's controller of ``kind``, e.g. ``arith-mlp-h``."""
    return f"{task}-{kind}"


def train_run_dirs(options: ReproduceOptions) -> list[Path]:
    """The fixed-k training runs, one per k of the ladder."""
    return [options.out / f"train-k{k}" for k in options.profile.ladder]


def test_runs(options: ReproduceOptions) -> list[tuple[str, Path]]:
    """The held-out runs in the table's order, as (method name, run directory)."""
    out, profile = options.out, options.profile
    runs = [(f"Fixed k={profile.baseline_k}", out / f"test-k{profile.baseline_k}")]
    runs += [(method_name(kind), out / f"test-dps-{kind}") for kind in options.kinds]
    runs.append((f"Power-SMC N={profile.smc_particles}", out / "test-smc"))
    runs.append((f"Temperature 1/alpha = {profile.temperature:g}", out / "test-temperature"))
    return runs


def base_config(
    options: ReproduceOptions, out: Path, method: str, *, test: bool, **overrides: Any
) -> SampleConfig:
    """A sampling config of the profile on the training or the held-out questions."""
    profile = options.profile
    settings: dict[str, Any] = {
        "bench": options.task, "out": out, "model": options.model_id, "method": method,
        "k": profile.baseline_k, "alpha": profile.alpha, "max_new_tokens": profile.max_new_tokens,
        "blocks": profile.blocks, "checkpoints": profile.checkpoints,
        "hidden_layer": profile.hidden_layer, "seeds": profile.seeds,
        "offset": profile.test_offset if test else 0,
        "limit": profile.test_questions if test else profile.train_questions,
        "device": options.device, "batch_size": profile.batch_size,
        "registry": options.registry_dir if method == "dps" else None,
        "command": f"dps reproduce --task {options.task} --profile {profile.name}",
    }  # fmt: skip
    return SampleConfig(**{**settings, **overrides})


def train_configs(options: ReproduceOptions) -> list[SampleConfig]:
    """Fixed-k power runs at every k of the ladder on the training questions."""
    return [
        base_config(options, run, "power", test=False, k=k)
        for k, run in zip(options.profile.ladder, train_run_dirs(options), strict=True)
    ]


def test_configs(options: ReproduceOptions) -> list[SampleConfig]:
    """Held-out runs: fixed k=8, DPS per controller, Power-SMC, temperature 1/alpha.

    DPS runs leave tau unset: `dps sample` resolves it from the controller's card when it
    starts (`dps_cli.pipeline.chains.with_default_tau`), in process and under Slurm alike.
    """
    runs = {run.name: run for _, run in test_runs(options)}
    fixed = base_config(options, runs[f"test-k{options.profile.baseline_k}"], "power", test=True)
    dps = [
        base_config(options, runs[f"test-dps-{kind}"], "dps", test=True,
                    controller=controller_name(options.task, kind))
        for kind in options.kinds
    ]  # fmt: skip
    temperature = base_config(
        options, runs["test-temperature"], "temperature", test=True,
        temperature=options.profile.temperature, hidden_layer=None,
        seeds=options.profile.temperature_seeds,  # enough samples for the compute-matched vote
    )  # fmt: skip
    smc = base_config(options, runs["test-smc"], "smc", test=True, particles=options.profile.smc_particles,
                      hidden_layer=None)  # fmt: skip
    return [fixed, *dps, smc, temperature]


def check_split(options: ReproduceOptions) -> None:
    """Refuse a profile whose train + test questions exceed the task's questions."""
    available = len(get_task(options.task).load(None))
    wanted = options.profile.train_questions + options.profile.test_questions
    if wanted > available:
        raise UserError(
            f"Profile {options.profile.name!r} needs {wanted} questions but task "
            f"{options.task!r} has {available}.",
            "Pick a task with more questions (e.g. --task math500) or a smaller profile.",
        )
