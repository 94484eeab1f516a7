"""Checks of Slurm: ``sbatch`` and ``sinfo`` on PATH, and whether the controller answers ``sinfo``."""

from __future__ import annotations

import shutil
import subprocess

from dps_cli.doctor.check import NO, YES, Check

GROUP = "slurm"
SINFO_TIMEOUT_S = 15.0


def slurm_checks() -> list[Check]:
    """sbatch, sinfo and the controller, each yes or no with the reason."""
    sbatch = shutil.which("sbatch")
    sinfo = shutil.which("sinfo")
    return [
        Check(GROUP, "sbatch", YES, sbatch) if sbatch else Check(
            GROUP, "sbatch", NO, "sbatch is not on PATH: --slurm-array still prints the script, "
            "but make reproduce SLURM=1 cannot submit"),
        Check(GROUP, "sinfo", YES, sinfo) if sinfo else Check(GROUP, "sinfo", NO, "sinfo is not on PATH"),
        controller_check(sinfo),
    ]  # fmt: skip


def controller_check(sinfo: str | None) -> Check:
    """Ask the controller for its partitions through ``sinfo``; its error line when it fails."""
    if sinfo is None:
        return Check(GROUP, "controller", NO, "not asked: sinfo is not on PATH")
    command = [sinfo, "--noheader", "--format=%P %a %D"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SINFO_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Check(GROUP, "controller", NO, f"sinfo got no answer in {SINFO_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return Check(GROUP, "controller", NO, f"sinfo could not be run ({exc})")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return Check(GROUP, "controller", NO, lines[-1] if lines else f"sinfo exited {done.returncode}")
    return Check(GROUP, "controller", YES, describe_partitions(done.stdout))


def describe_partitions(listing: str) -> str:
    """``sinfo --format='%P %a %D'`` lines -> "answered: partitions cpu* (up, 2 nodes), gpu (...)"."""
    parts = []
    for line in listing.strip().splitlines():
        fields = line.split()
        if len(fields) == 3:
            name, state, nodes = fields
            parts.append(f"{name} ({state}, {nodes} node{'' if nodes == '1' else 's'})")
    if not parts:
        return "answered, with no partitions"
    return f"answered: partition{'' if len(parts) == 1 else 's'} {', '.join(parts)}"
