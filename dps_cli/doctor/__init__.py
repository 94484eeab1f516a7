"""`dps doctor`: what this machine offers dps, one check per line, and why not where it does not.

`run_checks` returns the checks in a fixed order: compute (torch and its devices), backends,
sandbox, Slurm, files. A check never raises for something the machine lacks; a setting the user
got wrong (``DPS_HOME`` naming a file) becomes that line's "no" with the one-sentence reason.
"""

from __future__ import annotations

from collections.abc import Callable

from dps_cli.doctor.backends import backend_checks
from dps_cli.doctor.check import NO, WARN, YES, Check, Status
from dps_cli.doctor.compute import compute_checks
from dps_cli.doctor.files import (
    controllers_check,
    converted_models_check,
    data_check,
    embedded_model_check,
    hub_models_check,
)
from dps_cli.doctor.sandbox import sandbox_checks
from dps_cli.doctor.slurm import slurm_checks
from dps_cli.errors import UserError

#: The file checks, each with its line's name (used when a setting makes it fail).
FILE_CHECKS: tuple[tuple[str, Callable[[], Check]], ...] = (
    ("hub models", hub_models_check),
    ("converted models", converted_models_check),
    ("embedded model", embedded_model_check),
    ("controllers", controllers_check),
    ("data", data_check),
)


def run_checks() -> list[Check]:
    """Every check, in display order."""
    compute = compute_checks()
    torch_ok = compute[0].status == YES
    checks = [*compute, *backend_checks(torch_ok), *sandbox_checks(), *slurm_checks()]
    checks += [_file_check(name, check) for name, check in FILE_CHECKS]
    return checks


def _file_check(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except UserError as err:  # DPS_HOME or DPS_DATA_DIR names a file, or the registry is one
        return Check("files", name, NO, str(err))


__all__ = ["NO", "WARN", "YES", "Check", "Status", "run_checks"]
