"""`dps doctor`'s bubblewrap and Slurm lines: each one's "yes" and "no" path, with fakes."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from dps_cli.doctor import sandbox, slurm
from dps_cli.tasks.grading import bubblewrap


def completed(returncode: int = 0, stdout: str = "", stderr: str = "") -> Any:
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


def test_bubblewrap_yes_names_the_binary_and_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bubblewrap, "unavailable_reason", lambda: None)
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: "/opt/bin/bwrap")
    calls = []

    def run(command: list[str], **_: Any) -> Any:
        calls.append(command)
        return completed(stdout="bubblewrap 0.11.0\n")

    monkeypatch.setattr(subprocess, "run", run)
    [check] = sandbox.sandbox_checks()
    assert calls == [["/opt/bin/bwrap", "--version"]]
    assert (check.status, check.detail) == (
        "yes", "/opt/bin/bwrap (bubblewrap 0.11.0) started a test sandbox; HumanEval grading is isolated")


def test_bubblewrap_no_gives_the_reason_and_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "/usr/bin/bwrap could not start a sandbox here (bwrap: No permissions to create new namespace)"
    monkeypatch.setattr(bubblewrap, "unavailable_reason", lambda: reason)
    [check] = sandbox.sandbox_checks()
    assert check.status == "no"
    assert check.detail.startswith(reason + "; dps evaluate refuses HumanEval runs")
    assert "--unsafe-sandbox" in check.detail


def test_bwrap_version_is_left_out_when_it_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: completed(returncode=1))
    assert sandbox.bwrap_version("/opt/bin/bwrap") is None


def fake_which(monkeypatch: pytest.MonkeyPatch, found: set[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name in found else None)


def test_slurm_yes_when_the_controller_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_which(monkeypatch, {"sbatch", "sinfo"})
    commands = []

    def run(command: list[str], **_: Any) -> Any:
        commands.append(command)
        return completed(stdout="cpu* up 2\ngpu up 1\n")

    monkeypatch.setattr(subprocess, "run", run)
    checks = slurm.slurm_checks()
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("sbatch", "yes", "/usr/bin/sbatch"),
        ("sinfo", "yes", "/usr/bin/sinfo"),
        ("controller", "yes", "answered: partitions cpu* (up, 2 nodes), gpu (up, 1 node)"),
    ]
    assert commands == [["/usr/bin/sinfo", "--noheader", "--format=%P %a %D"]]


def test_slurm_no_when_nothing_is_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_which(monkeypatch, set())
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("sinfo must not be run"))
    checks = slurm.slurm_checks()
    assert [(c.name, c.status) for c in checks] == [("sbatch", "no"), ("sinfo", "no"), ("controller", "no")]
    assert checks[0].detail.startswith("sbatch is not on PATH")
    assert checks[2].detail == "not asked: sinfo is not on PATH"


def test_controller_no_shows_sinfo_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "slurm_load_partitions: Unable to contact slurm controller (connect failure)"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: completed(1, stderr=f"sinfo: error: x\n{error}\n"))
    check = slurm.controller_check("/usr/bin/sinfo")
    assert (check.status, check.detail) == ("no", error)


def test_controller_no_when_sinfo_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(command: list[str], **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hang)
    check = slurm.controller_check("/usr/bin/sinfo")
    assert (check.status, check.detail) == ("no", "sinfo got no answer in 15 s")


def test_controller_with_no_partitions() -> None:
    assert slurm.describe_partitions("") == "answered, with no partitions"
