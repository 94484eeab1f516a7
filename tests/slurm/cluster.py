"""A throwaway single-node Slurm for tests: munged, slurmctld and slurmd in a temp directory.

    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="dps-slurm-")))
    try:
        job = cluster.sbatch(script)        # sbatch, squeue, scontrol ... see SLURM_CONF
        cluster.wait([job])
    finally:
        cluster.stop()                      # scancel everything, then stop the three daemons

Everything lives under the given directory: slurm.conf, a fresh munge key and socket, state and
spool directories and the daemons' logs. The daemons run in the foreground as children of this
process and are stopped by their process ids. Run as root (slurmd starts jobs as their user).
Run it by hand with ``python tests/slurm/cluster.py`` (starts, prints SLURM_CONF, waits for
Ctrl-C, stops).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Daemons and client commands the cluster needs; tests skip when any is missing.
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
PARTITION = "debug"
#: Finished jobs stay visible to ``scontrol show job`` this long (no accounting database here).
MIN_JOB_AGE_S = 3600

SLURM_CONF = """\
ClusterName=dpstest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge={min_job_age}
KillWait=10
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing_binaries() -> list[str]:
    """The Slurm and munge programs that are not on PATH (or in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _binary(name: str) -> str:
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(name)
    return found


@dataclass
class Cluster:
    """A running single-node cluster; ``env`` points Slurm's client commands at it."""

    root: Path
    conf: Path
    node: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (and the jobs they submit)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, check: bool = True, cwd: Path | None = None,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``sbatch``, ``squeue`` ...) against this cluster."""
        return subprocess.run([_binary(args[0]), *args[1:]], capture_output=True, text=True,
                              check=check, cwd=cwd, env={**self.env, **(env or {})})

    def sbatch(self, script: Path, *options: str, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> str:
        """Submit ``script``; returns the job id."""
        result = self.command("sbatch", "--parsable", *options, str(script), cwd=cwd, env=env)
        return result.stdout.strip().split(";")[0]

    def queued(self, job_ids: Sequence[str] = ()) -> list[str]:
        """``JOBID STATE`` lines of jobs still pending or running (all jobs when none given)."""
        args = ["squeue", "-h", "-o", "%i %T"]
        if job_ids:
            args += ["-j", ",".join(job_ids)]
        result = self.command(*args, check=False)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def wait(self, job_ids: Sequence[str], timeout_s: float = 300.0) -> None:
        """Block until none of ``job_ids`` (or their array tasks) is pending or running."""
        deadline = time.monotonic() + timeout_s
        while self.queued(job_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still queued after {timeout_s}s: {self.queued(job_ids)}")
            time.sleep(0.5)

    def states(self, job_id: str) -> dict[str, str]:
        """``{job id (array tasks as ID_T): state}`` of a job, e.g. ``{"7_0": "COMPLETED"}``."""
        result = self.command("scontrol", "-o", "show", "job", job_id, check=False)
        states: dict[str, str] = {}
        for line in result.stdout.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            task = fields.get("ArrayTaskId")
            name = f"{fields.get('ArrayJobId')}_{task}" if task else fields.get("JobId", job_id)
            states[name] = fields.get("JobState", "?")
        return states

    def job_fields(self, job_id: str) -> list[dict[str, str]]:
        """Every ``scontrol show job`` field of a job (one dict per array task)."""
        result = self.command("scontrol", "-o", "show", "job", job_id, check=False)
        return [dict(item.split("=", 1) for item in line.split() if "=" in item)
                for line in result.stdout.splitlines()]

    def stop(self) -> None:
        """Cancel every job, let them end, then stop slurmd, slurmctld and munged by pid."""
        if self.processes and self.processes[0].poll() is None:
            self.command("scancel", "--full", "-u", "root", check=False)
            try:
                self.wait([], timeout_s=30)
            except TimeoutError:
                pass
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
        self.processes.clear()


def start_cluster(root: Path, timeout_s: float = 60.0) -> Cluster:
    """Write the config under ``root``, start the daemons and wait until the node is idle."""
    root = root.resolve()
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "munge.socket"
    node = socket.gethostname().split(".")[0]
    memory_mb = min(20_000, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9))
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(
        host=node, root=root, munge_socket=munge_socket, ctld_port=_free_port(),
        slurmd_port=_free_port(), cpus=os.cpu_count() or 1, memory_mb=memory_mb,
        partition=PARTITION, min_job_age=MIN_JOB_AGE_S,
    ))  # fmt: skip
    cluster = Cluster(root=root, conf=conf, node=node)
    env = cluster.env

    def spawn(*args: str) -> None:
        log = (root / f"{Path(args[0]).name}.stdout").open("ab")
        cluster.processes.append(subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip

    try:
        spawn(_binary("munged"), "-F", "--force", f"--socket={munge_socket}", f"--key-file={key}",
              f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'munge' / 'munged.log'}",
              f"--seed-file={root / 'munge' / 'munged.seed'}")  # fmt: skip
        _wait_for(lambda: munge_socket.exists(), timeout_s, "munged to open its socket", root)
        spawn(_binary("slurmctld"), "-D", "-i", "-f", str(conf))
        spawn(_binary("slurmd"), "-D", "-f", str(conf))
        _wait_for(lambda: _node_state(cluster) == "idle", timeout_s, "the node to become idle", root)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_state(cluster: Cluster) -> str:
    for process in cluster.processes:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}; see {cluster.root}")
    result = cluster.command("sinfo", "-h", "-N", "-o", "%t", check=False)
    return result.stdout.strip()


def _wait_for(ready: object, timeout_s: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}; logs are in {root}")
        time.sleep(0.2)


if __name__ == "__main__":
    import tempfile

    running = start_cluster(Path(tempfile.mkdtemp(prefix="dps-slurm-")))
    print(f"export SLURM_CONF={running.conf}  # Ctrl-C stops the cluster", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
