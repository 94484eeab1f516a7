"""Check of the HumanEval sandbox: can bubblewrap start the sandbox graded programs get, here."""

from __future__ import annotations

import subprocess

from dps_cli.doctor.check import NO, YES, Check
from dps_cli.tasks.grading import bubblewrap

GROUP = "sandbox"
VERSION_TIMEOUT_S = 10.0


def sandbox_checks() -> list[Check]:
    """One line: bubblewrap starts a test sandbox, or the reason it cannot."""
    reason = bubblewrap.unavailable_reason()
    if reason is not None:
        return [Check(GROUP, "bubblewrap", NO, f"{reason}; dps evaluate refuses HumanEval runs "
                      "(--unsafe-sandbox grades with resource limits only)")]  # fmt: skip
    bwrap = bubblewrap.find_bwrap()
    version = bwrap_version(bwrap) if bwrap else None
    where = f"{bwrap} ({version})" if version else str(bwrap)
    return [Check(GROUP, "bubblewrap", YES, f"{where} started a test sandbox; HumanEval grading is isolated")]


def bwrap_version(bwrap: str) -> str | None:
    """``bwrap --version``'s answer ("bubblewrap 0.11.0"), or None when it gives none."""
    try:
        done = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
