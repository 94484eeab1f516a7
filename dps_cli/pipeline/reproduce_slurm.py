"""`make reproduce SLURM=1`: the reproduction's stages as Slurm jobs chained by ``afterok``.

Submission order (every script is kept in ``<out>/slurm/`` for users to read or adapt):

1. one array per fixed-k training run (k = 2, 4, 6, 8); one task per (shard, seed), each running
   ``dps sample ... --shard i/n --seeds s`` into the shared run directory;
2. one job ``reproduce --stage collect-train`` after all training arrays;
3. arrays for the fixed k=8 and temperature baselines (no dependency: they need no controller),
   and one DPS array per controller after the training job (tau: the controller's recommended
   one, read by `dps sample` from the card when the task starts);
4. one job ``reproduce --stage report`` after every held-out array.

Slurm does the queueing, waiting and retries; we only write scripts and call ``sbatch``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dps_cli.config import SampleConfig
from dps_cli.pipeline.reproduce import ReproduceOptions, check_split, test_configs, train_configs
from dps_cli.pipeline.slurm import job_script, require_sbatch, seed_shard_array_script, submit_job
from dps_cli.runs.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

SLURM_DIR = "slurm"
#: Collect, training and the report need no GPU.
CPU_JOB = {"gres": "", "cpus-per-task": "4", "mem": "16G", "time": "4:00:00"}


@dataclass(frozen=True)
class SubmittedJob:
    """One ``sbatch`` call: its name, script, job id and the jobs it waits for."""

    name: str
    script: Path
    job_id: str
    after: tuple[str, ...]


def sample_argv(config: SampleConfig) -> list[str]:
    """``python -m dps_cli sample`` arguments reproducing ``config`` (seeds and shard excluded)."""
    argv = [
        sys.executable, "-m", "dps_cli", "sample", "--bench", config.bench, "--model", config.model,
        "--method", config.method, "--k", str(config.k), "--alpha", f"{config.alpha:g}",
        "--max-new-tokens", str(config.max_new_tokens), "--blocks", str(config.blocks),
        "--checkpoints", ",".join(str(b) for b in config.checkpoints),
        "--hidden-layer", "none" if config.hidden_layer is None else str(config.hidden_layer),
        "--offset", str(config.offset), "--out", str(config.out), "--device", config.device,
        "--run-seed", str(config.run_seed),
    ]  # fmt: skip
    if config.limit is not None:
        argv += ["--limit", str(config.limit)]
    if config.temperature is not None:
        argv += ["--temperature", f"{config.temperature:g}"]
    if config.controller is not None:
        argv += ["--controller", config.controller]
    if config.registry is not None:
        argv += ["--registry", str(config.registry)]
    if config.tau is not None:
        argv += ["--tau", f"{config.tau:g}"]
    if config.batch_size is not None:
        argv += ["--batch-size", str(config.batch_size)]
    return argv


def stage_argv(options: ReproduceOptions, stage: str) -> list[str]:
    """``python -m dps_cli.pipeline.reproduce --stage STAGE`` with this reproduction's paths."""
    return [
        sys.executable, "-m", "dps_cli.pipeline.reproduce", "--stage", stage,
        "--task", options.task, "--profile", options.profile.name, "--model", options.model_id,
        "--out-dir", str(options.out), "--reports-dir", str(options.reports_dir),
        "--registry", str(options.registry_dir), "--device", options.device,
    ]  # fmt: skip


def submit_reproduction(options: ReproduceOptions) -> list[SubmittedJob]:
    """Write every script and submit the whole reproduction; returns the jobs in order."""
    require_sbatch()  # before writing anything
    check_split(options)
    options = _absolute(options)
    folder = options.out / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    profile = options.profile
    jobs: list[SubmittedJob] = []

    def submit(name: str, script: str, after: Sequence[str] = ()) -> str:
        path = atomic_write_bytes(folder / f"{name}.sbatch", script.encode("utf-8"))
        job_id = submit_job(path, after)
        jobs.append(SubmittedJob(name, path, job_id, tuple(after)))
        logger.info("submitted %s as job %s%s", name, job_id,
                    f" (after {', '.join(after)})" if after else "")  # fmt: skip
        return job_id

    def array(config: SampleConfig, after: Sequence[str] = ()) -> str:
        name = config.out.name
        sbatch = {**profile.sbatch, "job-name": f"dps-{name}",
                  "output": str(folder / f"{name}-%A_%a.out")}  # fmt: skip
        script = seed_shard_array_script(
            sample_argv(config), profile.slurm_shards, profile.seeds, sbatch
        )
        return submit(name, script, after)

    def single(stage: str, after: Sequence[str]) -> str:
        sbatch = {**CPU_JOB, "job-name": f"dps-{stage}", "output": str(folder / f"{stage}-%j.out")}
        return submit(stage, job_script(stage_argv(options, stage), sbatch), after)

    train_ids = [array(config) for config in train_configs(options)]
    trained = single("collect-train", train_ids)
    configs = test_configs(options, {})  # DPS tasks read the recommended tau from the card
    test_ids = [array(c, [trained] if c.method == "dps" else []) for c in configs]
    single("report", test_ids)
    return jobs


def _absolute(options: ReproduceOptions) -> ReproduceOptions:
    """Jobs may start in another directory: pin every path."""
    return replace(
        options,
        out_dir=options.out.resolve(),
        reports_dir=options.reports_dir.resolve(),
        registry=options.registry_dir.resolve(),
    )
