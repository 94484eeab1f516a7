"""The sandbox tests again as an ordinary user, when the suite runs as root (issue #18).

As root the sandbox takes its root-only path (the view namespace, entered as uid 65534); an ordinary
user's grading runs bwrap as itself. This reruns the attack tests as uid 65534 in a separate
pytest, so that CI, which runs as root, covers both. The rerun sees the host through a bwrap that
only makes the directories on the way to the Python installation, this checkout and the data
searchable (a 0700 ``/root`` holding pyenv's Python, say); it changes nothing on the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dps_cli.tasks.grading import bubblewrap

ROOT = Path(__file__).resolve().parents[3]
UID = bubblewrap.SANDBOX_UID
FILES = [
    "tests/tasks/grading/test_sandbox_privileges.py",
    "tests/tasks/grading/test_sandbox_isolation.py",
]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as an ordinary user already"),
    pytest.mark.skipif(
        bubblewrap.unavailable_reason() is not None,
        reason=f"bubblewrap cannot start here: {bubblewrap.unavailable_reason()}",
    ),
]


def _searchable(path: Path) -> bool:
    """Whether any user may look up names in the directory ``path``."""
    return bool(path.stat().st_mode & 0o001)


def view_options(needed: list[Path]) -> list[str]:
    """bwrap options showing the host with ``needed`` reachable by any user."""
    options = ["--dev-bind", "/", "/"]
    hidden = sorted(
        {
            next(a for a in reversed(p.parents) if not _searchable(a))
            for p in needed
            if any(not _searchable(a) for a in p.parents)
        }
    )
    for directory in hidden:
        options += ["--perms", "0755", "--tmpfs", str(directory)]
    for path in needed:
        under = [h for h in hidden if h in path.parents]
        if under:
            for parent in reversed(path.parents):
                if under[0] in parent.parents:
                    options += ["--perms", "0755", "--dir", str(parent)]
            options += ["--bind", str(path), str(path)]
    return options


def test_the_attack_tests_pass_as_an_ordinary_user() -> None:
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    bwrap = bubblewrap.find_bwrap()
    if setpriv is None or bwrap is None:
        pytest.skip("setpriv or bwrap is missing")
    data = Path(os.environ.get("DPS_DATA_DIR", ROOT / "data")).resolve()
    needed = [Path(p).resolve() for p in {sys.base_prefix, sys.prefix}] + [ROOT]
    needed += [data] if data.is_dir() else []
    command = [bwrap, "--die-with-parent", *view_options(needed), setpriv]
    command += [f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--"]
    command += [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    env["DPS_DATA_DIR"] = str(data)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    # All but the cgroup variants, which an ordinary user without delegation skips.
    assert passed is not None and int(passed.group(1)) >= 12, summary
    assert "failed" not in summary and "error" not in summary, summary
