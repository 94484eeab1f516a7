"""One line of `dps doctor`: what was checked, whether this machine offers it, and why (not)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["yes", "no", "warn"]
YES: Status = "yes"
NO: Status = "no"
WARN: Status = "warn"  # usable, but something the user should know (a fallback, a partial setup)


@dataclass(frozen=True)
class Check:
    """A fact about this machine: ``status`` says if dps can use it, ``detail`` what or why not."""

    group: str  # "compute", "backends", "sandbox", "slurm", "files"
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        """The check as plain JSON-ready data (`dps doctor --json`)."""
        return asdict(self)
