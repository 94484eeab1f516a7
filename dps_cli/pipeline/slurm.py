"""Slurm array scripts: one array task per shard, each running `dps sample --shard i/n`.

Slurm does the scheduling, retries and dependencies; we only write the script it runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

SBATCH_DEFAULTS = {
    "job-name": "dps-sample",
    "gres": "gpu:1",
    "cpus-per-task": "8",
    "mem": "64G",
    "time": "24:00:00",
    "output": "slurm-%A_%a.out",
}


def _without_options(argv: Sequence[str], names: set[str]) -> list[str]:
    """Drop ``--name value`` / ``--name=value`` pairs for the given option names."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def _sbatch_header(options: dict[str, str]) -> str:
    """``#SBATCH --key=value`` lines; an empty value drops that option."""
    return "\n".join(f"#SBATCH --{key}={value}" for key, value in options.items() if value)


def sample_array_script(argv: Sequence[str], tasks: int, sbatch: dict[str, str] | None = None) -> str:
    """The sbatch script for a ``tasks``-wide array running ``dps sample <argv>`` sharded."""
    if tasks < 1:
        from dps_cli.errors import UserError

        raise UserError(f"--slurm-array {tasks} must be at least 1.")
    options = {**SBATCH_DEFAULTS, **(sbatch or {}), "array": f"0-{tasks - 1}"}
    args = _without_options(list(argv)[1:] if argv and argv[0] == "sample" else argv,
                            {"--slurm-array", "--shard"})
    header = _sbatch_header(options)
    command = shlex.join(["dps", "sample", *args])
    return (
        "#!/bin/bash\n"
        f"{header}\n"
        "# Each array task samples every n-th question; rerunning a task resumes it.\n"
        "set -euo pipefail\n"
        f'{command} --shard "${{SLURM_ARRAY_TASK_ID}}/{tasks}"\n'
    )


def seed_shard_array_script(
    command: Sequence[str], shards: int, seeds: Sequence[int], sbatch: dict[str, str] | None = None
) -> str:
    """An sbatch array of ``shards × len(seeds)`` tasks, each running ``command`` on one pair.

    Task t samples shard ``t // len(seeds)`` with seed ``seeds[t % len(seeds)]``, appending
    ``--shard i/n --seeds s`` to ``command`` (a full argv, e.g. ``python -m dps_cli sample ...``).
    Every task writes into the same run directory; rerunning a task resumes it. An empty value
    in ``sbatch`` drops that default (e.g. ``{"gres": ""}`` for a CPU-only array).
    """
    if shards < 1 or not seeds:
        from dps_cli.errors import UserError

        raise UserError(f"A Slurm array needs at least one shard and one seed (got {shards}, {list(seeds)}).")
    options = {**SBATCH_DEFAULTS, **(sbatch or {}), "array": f"0-{shards * len(seeds) - 1}"}
    header = _sbatch_header(options)
    return (
        "#!/bin/bash\n"
        f"{header}\n"
        "# Array task t samples shard t / SEEDS with seed SEEDS[t % SEEDS]; a rerun resumes it.\n"
        "set -euo pipefail\n"
        f"SEEDS=({' '.join(str(seed) for seed in seeds)})\n"
        'SHARD=$(( SLURM_ARRAY_TASK_ID / ${#SEEDS[@]} ))\n'
        'SEED=${SEEDS[$(( SLURM_ARRAY_TASK_ID % ${#SEEDS[@]} ))]}\n'
        f'{shlex.join(list(command))} --shard "${{SHARD}}/{shards}" --seeds "${{SEED}}"\n'
    )


def job_script(command: Sequence[str], sbatch: dict[str, str] | None = None) -> str:
    """An sbatch script for one (non-array) job running ``command``; an empty value drops a default."""
    options = {**SBATCH_DEFAULTS, "output": "slurm-%j.out", **(sbatch or {})}
    header = _sbatch_header(options)
    return f"#!/bin/bash\n{header}\nset -euo pipefail\n{shlex.join(list(command))}\n"


def submit_job(script: Path, after: Sequence[str] = ()) -> str:
    """``sbatch --parsable [--dependency=afterok:ID:...] SCRIPT``; returns the new job's id.

    Slurm does the waiting: a job with ``afterok`` starts only once every listed job (every
    task of an array) has finished successfully.
    """
    import subprocess

    from dps_cli.errors import DpsError

    command = [require_sbatch(), "--parsable"]
    if after:
        command.append(f"--dependency=afterok:{':'.join(after)}")
    command.append(str(script))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DpsError(f"sbatch refused {script}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]  # --parsable prints "ID" or "ID;CLUSTER"


def require_sbatch() -> str:
    """The path of ``sbatch``; a UserError saying what to do when it is not on PATH."""
    import shutil

    from dps_cli.errors import UserError

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UserError("sbatch is not on PATH, so nothing can be submitted to Slurm.",
                        "Run on a Slurm login node, or drop --slurm / SLURM=1 to run here.")
    return sbatch
