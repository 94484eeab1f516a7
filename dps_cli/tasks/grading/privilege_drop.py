"""How a root grading process starts each sandbox as an unprivileged user (issue #18).

bwrap maps the sandbox's uid to the uid that started bwrap, so a sandbox that root starts would
run as host root. Instead, root hands each sandbox's bwrap process to
`dps_cli.tasks.grading.bubblewrap.SANDBOX_UID` (``nobody``) between fork and exec. That user
may not be able to reach everything the sandbox needs: pyenv's Python often lies under a 0700
``/root``. So, once per process, an outer bwrap (as root) builds a mount namespace that holds
only the system directories, the Python installation and bwrap, with every directory on the way
of mode 0755. The grading process keeps a descriptor of that namespace. Each sandbox's process
enters it (``setns``), drops its groups, gid and uid, and only then executes bwrap, which builds
the sandbox as that unprivileged user. This costs no extra process per sandbox.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import subprocess
from collections.abc import Callable

_CLONE_NEWNS = 0x00020000
_HOLDER_TIMEOUT_S = 30.0


@functools.cache
def view_namespace(command: tuple[str, ...]) -> int:
    """A descriptor of the mount namespace in which ``command`` (``bwrap ... PROGRAM``) runs.

    ``PROGRAM`` must wait for the end of its stdin. The namespace outlives it through the
    descriptor, which this process keeps until it exits (so it is made once per process).

    Raises:
        OSError: bwrap did not start (its message is the error's).

    """
    bwrap, rest = command[0], list(command[1:])
    read_fd, write_fd = os.pipe()
    holder = subprocess.Popen(
        [bwrap, "--info-fd", str(write_fd), *rest],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(write_fd,),
        env={},
    )
    os.close(write_fd)
    try:
        info = _read_info(read_fd)
        if info is None:
            holder.wait(timeout=_HOLDER_TIMEOUT_S)
            stderr = holder.stderr.read() if holder.stderr else b""
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise OSError(lines[-1] if lines else f"bwrap exited with code {holder.returncode}")
        return os.open(f"/proc/{info['child-pid']}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(read_fd)
        holder.communicate(timeout=_HOLDER_TIMEOUT_S)  # closes its stdin: the holder ends


def _read_info(fd: int) -> dict[str, int] | None:
    """The JSON object bwrap writes to ``--info-fd`` once its child has started; None if it
    ends first."""
    data = b""
    while b"}" not in data:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    parsed = json.loads(data[: data.index(b"}") + 1])
    return parsed if isinstance(parsed, dict) and "child-pid" in parsed else None


def entering(namespace_fd: int, uid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the new process into the mount namespace ``namespace_fd`` and
    makes it ``uid`` (gid ``uid``, no supplementary groups) before it executes.

    As root, setns changes the process's root and working directory to the namespace's, and
    giving up uid 0 clears every capability, so the process is an ordinary user from then on.
    """
    setns = ctypes.CDLL(None, use_errno=True).setns

    def enter() -> None:
        if setns(namespace_fd, _CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns into the sandbox's view failed")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    return enter
