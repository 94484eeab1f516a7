"""Slurm scripts: arrays of `dps sample` shards and single jobs, and ``sbatch`` submission.

Slurm does the scheduling, retries and dependencies; we only write the scripts it runs. Every
script that samples runs `dps sample` with `dps_cli.config.sample_argv` of its `SampleConfig`,
so a script means exactly what the config means.

Resources (``#SBATCH`` options) come in layers, later ones winning: the script's own (job name,
log file), a preset (`resources_for_device` for `dps sample --slurm-array`: a GPU for
``auto``/``cuda``, none for ``cpu``; the profile's for `make reproduce SLURM=1`), then the
user's ``--sbatch KEY=VALUE``. An empty value drops an option; a key without ``=`` is a flag
(``--sbatch requeue``).

Failure handling: a cancelled or preempted array task keeps the samples it finished, and
submitting the same script again resumes it (stored pairs are skipped). Jobs submitted with a
dependency use ``afterok`` with ``--kill-on-invalid-dep=yes``, so a failed stage cancels the
stages that depend on it instead of leaving them pending forever.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from dps_cli.config import SampleConfig, sample_argv
from dps_cli.errors import UserError

#: ``#SBATCH`` options: a value, ``None`` for a flag without value, ``""`` to drop the option.
SbatchOptions = Mapping[str, str | None]

#: One GPU with room for a 7B model; what `dps sample --device auto|cuda` asks for.
GPU_RESOURCES: dict[str, str | None] = {"gres": "gpu:1", "cpus-per-task": "8", "mem": "64G"}
#: A CPU run of a small model: fits a 2-CPU node; asks for no GPU.
CPU_RESOURCES: dict[str, str | None] = {"cpus-per-task": "2", "mem": "8G"}
#: Options only `dps` sets: the array range follows the shards, dependencies the stages.
MANAGED_OPTIONS = ("array", "dependency")
#: Options that ask for a GPU, dropped for jobs that need none (collect, training, reports).
GPU_OPTIONS = ("gres", "gpus", "gpus-per-node", "gpus-per-task", "gpus-per-socket")


def parse_sbatch(items: Iterable[str]) -> dict[str, str | None]:
    """``["partition=cpu", "gres=", "requeue"]`` -> ``{"partition": "cpu", "gres": "", "requeue": None}``."""
    options: dict[str, str | None] = {}
    for item in items:
        key, has_value, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key or " " in key:
            raise UserError(f"--sbatch {item!r} is not KEY=VALUE.",
                            "For example --sbatch partition=gpu --sbatch time=4:00:00.")  # fmt: skip
        if key in MANAGED_OPTIONS:
            raise UserError(f"--sbatch {key}=... is set by dps itself.",
                            "dps sets the array from --slurm-array (or the profile's shards) and the "
                            "dependencies from the pipeline's stages.")  # fmt: skip
        options[key] = value.strip() if has_value else None
    return options


def resources_for_device(device: str) -> dict[str, str | None]:
    """The resources a run on ``device`` asks for: a GPU unless it runs on the CPU (or MPS)."""
    return dict(CPU_RESOURCES if device.split(":")[0] in ("cpu", "mps") else GPU_RESOURCES)


def without_gpu(options: SbatchOptions) -> dict[str, str | None]:
    """``options`` minus every option that asks for a GPU."""
    return {key: value for key, value in options.items() if key not in GPU_OPTIONS}


def sbatch_header(*layers: SbatchOptions) -> str:
    """``#SBATCH`` lines of the merged ``layers`` (later wins); ``""`` drops an option."""
    merged: dict[str, str | None] = {}
    for layer in layers:
        merged.update(layer)
    return "\n".join(
        f"#SBATCH --{key}" if value is None else f"#SBATCH --{key}={value}"
        for key, value in merged.items()
        if value != ""
    )


def pinned(config: SampleConfig) -> SampleConfig:
    """``config`` with absolute paths: a job may start in another directory."""
    model = Path(config.model)
    return replace(
        config,
        out=config.out.resolve(),
        data=config.data.resolve() if config.data else None,
        registry=config.registry.resolve() if config.registry else None,
        model=str(model.resolve()) if model.exists() else config.model,
    )


def sample_array_script(
    config: SampleConfig,
    tasks: int,
    sbatch: SbatchOptions | None = None,
    program: Sequence[str] = ("dps",),
    resume_hint: str = "submit this script again to finish the run (stored samples are skipped)",
) -> str:
    """The sbatch script of a ``tasks``-wide array running ``config``, task i on shard i/tasks.

    Every task writes into the same run directory, each as the one writer of its own shard;
    a rerun of a task resumes it. ``sbatch`` gives every resource (see the module docstring).
    """
    if tasks < 1:
        raise UserError(f"--slurm-array {tasks} must be at least 1.")
    config = pinned(config)
    command = shlex.join([*program, "sample", *sample_argv(config, omit=("--shard",))])
    header = sbatch_header(
        {"job-name": f"dps-{config.out.name}", "output": "slurm-%A_%a.out"},
        dict(sbatch or {}), {"array": f"0-{tasks - 1}"},
    )  # fmt: skip
    return (
        f"#!/bin/bash\n{header}\n"
        "# Each array task samples every n-th question into the same run directory. A cancelled\n"
        "# or failed task keeps its finished samples: submit this script again to finish the run.\n"
        f"{_preamble(resume_hint)}"
        f'{command} --shard "${{SLURM_ARRAY_TASK_ID}}/{tasks}"\n'
    )


def job_script(command: Sequence[str], sbatch: SbatchOptions | None = None, resume_hint: str = "") -> str:
    """An sbatch script for one (non-array) job running ``command``; ``sbatch`` gives resources."""
    header = sbatch_header({"output": "slurm-%j.out"}, dict(sbatch or {}))
    return f"#!/bin/bash\n{header}\n{_preamble(resume_hint)}{shlex.join(list(command))}\n"


def _preamble(resume_hint: str) -> str:
    """Strict bash; on failure, tell the job's log how to resume; threads = allocated CPUs.

    Without CPU binding every task would start one thread per core of the node, and tasks that
    share a node would slow each other down.
    """
    lines = ["set -euo pipefail"]
    if resume_hint:
        lines.append(f"RESUME={shlex.quote(resume_hint)}")
        lines.append("""trap 'echo "dps: this job failed; $RESUME" >&2' ERR""")
    lines.append('if [[ -n "${SLURM_CPUS_PER_TASK:-}" && -z "${OMP_NUM_THREADS:-}" ]]; then '
                 "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi")  # fmt: skip
    return "".join(f"{line}\n" for line in lines)


def submit_job(script: Path, after: Sequence[str] = ()) -> str:
    """``sbatch --parsable [--dependency=afterok:ID:... --kill-on-invalid-dep=yes] SCRIPT``.

    Slurm does the waiting: a job with ``afterok`` starts only once every listed job (every
    task of an array) has finished successfully, and is cancelled if one of them fails.
    Returns the new job's id.
    """
    import subprocess

    from dps_cli.errors import DpsError

    command = [require_sbatch(), "--parsable"]
    if after:
        command += [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"]
    command.append(str(script))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DpsError(f"sbatch refused {script}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]  # --parsable prints "ID" or "ID;CLUSTER"


def require_sbatch() -> str:
    """The path of ``sbatch``; a UserError saying what to do when it is not on PATH."""
    import shutil

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UserError("sbatch is not on PATH, so nothing can be submitted to Slurm.",
                        "Run on a Slurm login node, or drop --slurm / SLURM=1 to run here.")
    return sbatch
