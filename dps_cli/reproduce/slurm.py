"""`make reproduce SLURM=1`: the reproduction's stages as Slurm jobs chained by ``afterok``.

Submission order (every script is kept in ``<out>/slurm/`` for users to read or adapt):

1. one array per fixed-k training run (k = 2, 4, 6, 8) of ``slurm_shards × seeds`` tasks, task i
   running ``dps sample ... --shard i/n`` into the shared run directory;
2. one job ``dps reproduce --stage collect-train`` after all training arrays;
3. arrays for the fixed k=8 and temperature baselines (no dependency: they need no controller),
   and one DPS array per controller after the training job (tau: resolved by `dps sample` from
   the controller's card when the task starts, exactly as in process);
4. one job ``dps reproduce --stage report`` after every held-out array.

Every sampling script runs `dps sample` with the argv of the stage's `SampleConfig`
(`dps_cli.config.sample_argv`). Resources: sampling arrays take the profile's ``sbatch``
options, the other jobs the same without a GPU; ``ReproduceOptions.sbatch`` (``--sbatch``)
overrides both. A failed job cancels every job that depends on it; `resume_command` is the
command that resumes: it submits the pipeline again, leaving out the training and baseline
arrays whose runs are complete, and every stage skips finished work.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dps_cli.config import SampleConfig
from dps_cli.pipeline.slurm import (
    job_script,
    require_sbatch,
    sample_array_script,
    submit_job,
    without_gpu,
)
from dps_cli.reproduce.runs import (
    ReproduceOptions,
    check_split,
    reproduce_argv,
    test_configs,
    train_configs,
)
from dps_cli.runs.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

SLURM_DIR = "slurm"
#: How the jobs run dps: this interpreter, so a job finds the same installation.
DPS_PROGRAM = (sys.executable, "-m", "dps_cli")
REPRODUCE_PROGRAM = (*DPS_PROGRAM, "reproduce")


@dataclass(frozen=True)
class SubmittedJob:
    """One ``sbatch`` call: its name, script, job id and the jobs it waits for."""

    name: str
    script: Path
    job_id: str
    after: tuple[str, ...]


def stage_argv(options: ReproduceOptions, stage: str) -> list[str]:
    """``dps reproduce --stage STAGE`` with this reproduction's paths."""
    return [*REPRODUCE_PROGRAM, "--stage", stage, *reproduce_argv(options)]


def resume_command(options: ReproduceOptions) -> str:
    """The shell command that resubmits the reproduction; finished work is skipped."""
    return shlex.join([*REPRODUCE_PROGRAM, "--slurm", *reproduce_argv(_absolute(options))])


def submit_reproduction(options: ReproduceOptions) -> list[SubmittedJob]:
    """Write every script and submit the whole reproduction; returns the jobs in order."""
    require_sbatch()  # before writing anything
    check_split(options)
    options = _absolute(options)
    folder = options.out / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    profile = options.profile
    resume = f"once the queue holds none of its jobs, resume the pipeline with: {resume_command(options)}"
    jobs: list[SubmittedJob] = []

    def submit(name: str, script: str, after: Sequence[str] = ()) -> str:
        path = atomic_write_bytes(folder / f"{name}.sbatch", script.encode("utf-8"))
        job_id = submit_job(path, after)
        jobs.append(SubmittedJob(name, path, job_id, tuple(after)))
        logger.info("submitted %s as job %s%s", name, job_id,
                    f" (after {', '.join(after)})" if after else "")  # fmt: skip
        return job_id

    def array(config: SampleConfig, after: Sequence[str] = ()) -> str | None:
        name = config.out.name
        if not after and is_complete(config):
            logger.info("%s holds every sample already; not submitted", name)
            return None
        sbatch = {"job-name": f"dps-{name}", "output": str(folder / f"{name}-%A_%a.out"),
                  **profile.sbatch, **options.sbatch}  # fmt: skip
        tasks = profile.slurm_shards * len(config.seeds)  # as many tasks as (shard, seed) pairs
        script = sample_array_script(config, tasks, sbatch, DPS_PROGRAM, resume)
        return submit(name, script, after)

    def single(stage: str, after: Sequence[str]) -> str:
        sbatch = {"job-name": f"dps-{stage}", "output": str(folder / f"{stage}-%j.out"),
                  **without_gpu({**profile.sbatch, **options.sbatch})}  # fmt: skip
        return submit(stage, job_script(stage_argv(options, stage), sbatch, resume), after)

    # An array that waits for controllers is always submitted: retraining them removes its run.
    train_ids = [array(config) for config in train_configs(options)]
    trained = single("collect-train", [job for job in train_ids if job])
    test_ids = [array(c, [trained] if c.method == "dps" else []) for c in test_configs(options)]
    single("report", [job for job in test_ids if job])
    return jobs


def is_complete(config: SampleConfig) -> bool:
    """Whether ``config.out`` is this config's run and stores every (question, seed) pair."""
    from dps_cli.pipeline.sample import select_questions
    from dps_cli.runs.store import RunStore
    from dps_cli.tasks import get_task

    store = RunStore(config.out)
    if not store.manifest_path.is_file():
        return False
    stored = store.read_manifest().get("config", {})
    wanted = json.loads(json.dumps(config.identity()))
    # "auto" settings are resolved by `dps sample` before it writes the manifest.
    if any(value != stored.get(key) and value != "auto" for key, value in wanted.items()):
        return False
    questions = select_questions(get_task(config.bench).load(config.data), config)
    return {(q.id, seed) for q in questions for seed in config.seeds} <= store.completed_keys()


def _absolute(options: ReproduceOptions) -> ReproduceOptions:
    """Jobs may start in another directory: pin every path."""
    model = Path(options.model_id)
    return replace(
        options,
        model=str(model.resolve()) if model.exists() else options.model_id,
        out_dir=options.out.resolve(),
        reports_dir=options.reports_dir.resolve(),
        registry=options.registry_dir.resolve(),
    )
