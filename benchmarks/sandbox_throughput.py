"""How fast the HumanEval sandbox grades: start-up cost per program and a whole 164 x 8 grading.

Prints one JSON object:

- ``startup_ms``: median wall time (``wall``) and mean CPU time (``cpu``) of ``python -I -S -c pass`` bare and inside the bubblewrap
  sandbox (the cost of bubblewrap alone), and of `run_tests` on a one-line passing program in
  the sandbox and with ``unsafe=True`` (the whole per-program cost: two processes, the bridge);
- ``grading``: ``--samples`` copies of every canonical solution (``--wrong`` makes every other
  sample an empty, failing completion) graded by `run_many` with ``--workers``: total seconds,
  programs per second, how many passed;
- the machine: CPUs, load average before and after (the figures are wall-clock times, so other
  work on the machine slows them; ``cpu_ms_per_program`` is CPU time, which it does not).

Usage: ``DPS_DATA_DIR=../shared/data python benchmarks/sandbox_throughput.py --workers 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dps_cli.tasks.grading import bubblewrap  # noqa: E402
from dps_cli.tasks.grading.code import extract_program  # noqa: E402
from dps_cli.tasks.grading.sandbox import run_many, run_tests  # noqa: E402

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
PROGRAM = "def double(x):\n    return 2 * x\n"


def measure(action: Callable[[], object], runs: int) -> dict[str, float]:
    """Median wall time and mean CPU time (of the child processes) of ``action()``, in ms."""
    times = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": round(statistics.median(times) * 1000, 1), "cpu": round(cpu_s / runs * 1000, 1)}


def startup(runs: int) -> dict[str, dict[str, float] | None]:
    """Start-up costs, bare and sandboxed (None where bubblewrap cannot start)."""
    interpreter = bubblewrap.sandbox_interpreter()
    bare = [interpreter, "-I", "-S", "-c", "pass"]
    figures: dict[str, dict[str, float] | None] = {
        "python_bare": measure(lambda: subprocess.run(bare, check=True), runs),
        "run_tests_unsafe": measure(lambda: run_tests(PROGRAM, TEST, "double", unsafe=True), runs),
        "python_in_bwrap": None,
        "run_tests_bwrap": None,
    }
    bwrap = bubblewrap.find_bwrap()
    if bubblewrap.unavailable_reason() is None and bwrap is not None:
        boxed = bubblewrap.bwrap_command(bwrap, interpreter)

        def run_boxed() -> None:
            fd = bubblewrap.filter_fd()  # each sandbox reads its own copy of the filter
            try:
                command = boxed + ["--seccomp", str(fd)] + bare
                start = bubblewrap.launcher()
                subprocess.run(command, check=True, pass_fds=(fd,), preexec_fn=start)
            finally:
                os.close(fd)

        figures["python_in_bwrap"] = measure(run_boxed, runs)
        figures["run_tests_bwrap"] = measure(lambda: run_tests(PROGRAM, TEST, "double"), runs)
    return figures


def grading(data: Path, samples: int, workers: int, wrong: bool, unsafe: bool) -> dict[str, object]:
    """Grade ``samples`` answers to every problem in ``data`` and time it."""
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    cases = []
    for row in rows:
        for sample in range(samples):
            answer = "" if wrong and sample % 2 else row["canonical_solution"]
            program = extract_program(answer, row["prompt"], row["entry_point"])
            cases.append((program, row["test"], row["entry_point"]))
    before = [resource.getrusage(who) for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF)]
    start = time.perf_counter()
    results = run_many(cases, workers=workers, unsafe=unsafe)
    seconds = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF)]
    sandbox_s, grader_s = (
        (end.ru_utime - begin.ru_utime) + (end.ru_stime - begin.ru_stime)
        for begin, end in zip(before, after, strict=True)
    )
    return {
        "problems": len(rows),
        "samples": samples,
        "programs": len(cases),
        "workers": workers,
        "sandbox": "unsafe" if unsafe else "bwrap",
        "seconds": round(seconds, 1),
        "programs_per_s": round(len(cases) / seconds, 1),
        # CPU time, which load does not change: of the sandboxes (bwrap and all processes in it,
        # which the judge reaps as pid 1) and of the grading process itself (its threads, Popen).
        "sandbox_cpu_ms_per_program": round(sandbox_s / len(cases) * 1000, 1),
        "grader_cpu_ms_per_program": round(grader_s / len(cases) * 1000, 1),
        "passed": sum(result.passed for result in results),
        "statuses": {
            s: sum(r.status == s for r in results) for s in ("failed", "timeout", "error")
        },
    }


def _caps() -> str:
    """What caps a whole sandbox here: a cgroup, or the per-process limits (issue #18)."""
    try:
        from dps_cli.tasks.grading import cgroup
    except ImportError:  # a checkout from before cgroups (the baseline of issue #18)
        return "per-process limits"
    return "cgroup" if cgroup.cgroup_parents() is not None else "per-process limits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("DPS_DATA_DIR", "../shared/data"), "humaneval.jsonl")
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--startup-runs", type=int, default=20)
    parser.add_argument("--wrong", action="store_true", help="every other sample fails")
    parser.add_argument("--unsafe", action="store_true", help="grade without bubblewrap")
    args = parser.parse_args()
    load_before = os.getloadavg()
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "bwrap": bubblewrap.find_bwrap(),
            "bwrap_unavailable": bubblewrap.unavailable_reason(),
            "euid": os.geteuid(),
            "caps": _caps(),
            "load_average_before": [round(x, 2) for x in load_before],
        },
        "startup_ms": startup(args.startup_runs),
        "grading": grading(args.data, args.samples, args.workers, args.wrong, args.unsafe),
    }
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
