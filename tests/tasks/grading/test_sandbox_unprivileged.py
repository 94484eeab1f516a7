"""The sandbox tests again as an ordinary user, when the suite runs as root (issue #18).

As root the sandbox takes its root-only path (the view namespace, entered as uid 65534); an ordinary
user's grading runs bwrap as itself. This reruns the attack tests as uid 65534 in a separate
pytest, so that CI, which runs as root, covers both. The rerun sees the host through a bwrap that
only makes the Python installation, this checkout and the data, and the directories on the way
to them, reachable by any user (a 0700 ``/root`` holding pyenv's Python, a checkout in a 0700
``mktemp -d`` directory); it changes nothing on the host.
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
    "tests/tasks/grading/test_seccomp.py",
]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as an ordinary user already"),
    pytest.mark.skipif(
        bubblewrap.unavailable_reason() is not None,
        reason=f"bubblewrap cannot start here: {bubblewrap.unavailable_reason()}",
    ),
]


def _open_to_all(directory: Path, itself: bool) -> bool:
    """Whether any user may enter ``directory`` and, where it is ``itself`` a needed directory,
    list it too (Python's import system lists the directories on its path)."""
    wanted = 0o005 if itself else 0o001
    return directory.stat().st_mode & wanted == wanted


def view_options(needed: list[Path]) -> list[str]:
    """bwrap options showing the host with each of ``needed``, and all it holds, reachable by
    any user.

    Every directory on the way to one of them, or one of them itself, that others may not enter
    (a 0700 ``/root`` or ``/root/.pyenv``; a checkout cloned into a 0700 ``mktemp -d`` directory,
    as CI does) is covered, from the top down, by a 0755 tmpfs into which its entries are bound
    back; so the view shows the same files at the same paths, and only the modes on the way
    differ.
    """
    closed: set[Path] = set()
    for path in needed:
        for directory in [*reversed(path.parents[:-1]), path]:  # from the top, without "/"
            if not _open_to_all(directory, itself=directory == path):
                closed.add(directory)
    options = ["--dev-bind", "/", "/"]
    for directory in sorted(closed, key=lambda d: len(d.parts)):
        options += ["--perms", "0755", "--tmpfs", str(directory)]
        for entry in sorted(directory.iterdir()):
            if entry.is_symlink():
                options += ["--symlink", os.readlink(entry), str(entry)]
            elif entry.is_dir() or entry.is_file():
                options += ["--bind", str(entry), str(entry)]
    return options


def test_the_view_opens_closed_directories_on_the_way_and_the_checkout_itself(
    tmp_path: Path,
) -> None:
    """A checkout in a 0700 directory under a 0700 directory is readable by uid 65534 in the
    view, with its symlinks and files as they are, and nothing on the host changes."""
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    bwrap = bubblewrap.find_bwrap()
    if setpriv is None or bwrap is None:
        pytest.skip("setpriv or bwrap is missing")
    outer = tmp_path / "home"
    checkout = outer / "tmp.x"
    (checkout / "pkg").mkdir(parents=True)
    (checkout / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (checkout / ".venv").symlink_to("pkg")
    for directory, mode in [(tmp_path, 0o755), (outer, 0o700), (checkout, 0o700)]:
        directory.chmod(mode)
    (checkout / "pkg" / "mod.py").chmod(0o644)
    command = [bwrap, "--die-with-parent", *view_options([checkout]), setpriv]
    command += [f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--"]
    command += ["/bin/sh", "-c", f"cat {checkout}/.venv/mod.py && ls -A {checkout}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={})
    assert (done.returncode, done.stdout) == (0, "VALUE = 1\n.venv\npkg\n"), done.stderr
    assert [oct(d.stat().st_mode & 0o777) for d in (outer, checkout)] == ["0o700", "0o700"]


def test_the_attack_tests_pass_as_an_ordinary_user() -> None:
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    bwrap = bubblewrap.find_bwrap()
    if setpriv is None or bwrap is None:
        pytest.skip("setpriv or bwrap is missing")
    data = Path(os.environ.get("DPS_DATA_DIR") or ROOT / "data").resolve()  # make: "" if unset
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
