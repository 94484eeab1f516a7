"""Slurm array scripts: one array task per shard, each running `dps sample --shard i/n`.

Slurm does the scheduling, retries and dependencies; we only write the script it runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

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


def sample_array_script(argv: Sequence[str], tasks: int, sbatch: dict[str, str] | None = None) -> str:
    """The sbatch script for a ``tasks``-wide array running ``dps sample <argv>`` sharded."""
    if tasks < 1:
        from dps_cli.errors import UserError

        raise UserError(f"--slurm-array {tasks} must be at least 1.")
    options = {**SBATCH_DEFAULTS, **(sbatch or {}), "array": f"0-{tasks - 1}"}
    args = _without_options(list(argv)[1:] if argv and argv[0] == "sample" else argv,
                            {"--slurm-array", "--shard"})
    header = "\n".join(f"#SBATCH --{key}={value}" for key, value in options.items())
    command = shlex.join(["dps", "sample", *args])
    return (
        "#!/bin/bash\n"
        f"{header}\n"
        "# Each array task samples every n-th question; rerunning a task resumes it.\n"
        "set -euo pipefail\n"
        f'{command} --shard "${{SLURM_ARRAY_TASK_ID}}/{tasks}"\n'
    )
