"""The program that grades one HumanEval answer, run inside the sandbox (standard library only).

`dps_cli.tasks.grading.sandbox` starts this file's source with ``python -I -S -c``; it is a module
of the package only so that it is linted, type-checked and unit-tested, and it is one file (longer
than most) because it travels into the sandbox as one source string. It never imports ``dps_cli``,
and it imports as little as it can: every import is paid by every graded program.

Two processes, so that the verdict comes from a process the candidate program cannot reach:

- the **judge** (the first process; pid 1 of the sandbox's pid namespace under bubblewrap) forks
  the candidate process, then reads the nonce, the program and the tests from its stdin, runs the
  benchmark's ``check(candidate)`` itself, and writes ``<nonce> <verdict>`` to the marker pipe;
- the **candidate** process closes the marker pipe and stdin before any program code runs, sets
  its resource limits and the Python-level guard, runs the program, and then answers the judge's
  calls (``candidate(*args)``, helper functions the tests use) over a pair of private pipes.

Only plain data crosses between them (None, bool, int, float, complex, str, bytes and lists,
tuples, dicts, sets of those), in a small tagged binary format that the judge decodes strictly
into exact built-in types, so the values the tests compare are never objects of the program's
making, and a malformed message is an error, never a pass.
"""

from __future__ import annotations

# _signal rather than signal, and no typing at run time (typing alone took 15 ms; signal loads
# enum).
import _signal
import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: The longest message either process accepts from the other (bytes).
MAX_MESSAGE_BYTES = 256 * 1024**2
#: The deepest nesting of lists, tuples, dicts and sets that crosses the boundary.
MAX_DEPTH = 200
_HEADER = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_CONSTANTS = {b"N": None, b"T": True, b"F": False}
#: Checked in order: a tuple subclass (a named tuple) travels as a tuple.
_SEQUENCE_TAGS: dict[type, bytes] = {list: b"l", tuple: b"t", frozenset: b"z", set: b"S"}
_PR_SET_DUMPABLE = 4


class BridgeError(Exception):
    """A value that cannot cross the boundary, or a malformed message from the candidate."""


class ProgramError(Exception):
    """An exception raised in the candidate process whose class is not a built-in exception."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class ProgramExit(BaseException):
    """The candidate raised a non-`Exception` (SystemExit, KeyboardInterrupt) or died.

    A BaseException, so that a test's ``except Exception`` does not swallow it.
    """

    def __init__(self, verdict: str) -> None:
        super().__init__(verdict)
        self.verdict = verdict


def encode(value: Any) -> bytes:
    """``value`` in the bridge's binary format; raise `BridgeError` for anything but plain data.

    Subclasses of the plain types (a Counter, a named tuple, an IntEnum) travel as their base
    type, which is what an equality test against a literal compares anyway.
    """
    chunks: list[bytes] = []
    _encode(value, chunks, 0)
    return b"".join(chunks)


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    """Append ``value``'s encoding to ``out``: a one-byte tag, then its payload."""
    if depth > MAX_DEPTH:
        raise BridgeError(f"the value is nested more than {MAX_DEPTH} levels deep")
    if value is None or type(value) is bool:
        out.append(b"N" if value is None else (b"T" if value else b"F"))
    elif isinstance(value, int):
        number = int.__int__(value)  # the plain value, whatever a subclass's __int__ says
        raw = number.to_bytes(number.bit_length() // 8 + 1, "little", signed=True)
        out += [b"i", _U32.pack(len(raw)), raw]
    elif isinstance(value, float):
        out += [b"f", _F64.pack(value)]
    elif isinstance(value, complex):
        out += [b"c", _F64.pack(value.real), _F64.pack(value.imag)]
    elif isinstance(value, str):
        raw = str.__str__(value).encode("utf-8", "surrogatepass")
        out += [b"s", _U32.pack(len(raw)), raw]
    elif isinstance(value, (bytes, bytearray)):
        out += [b"b", _U32.pack(len(value)), bytes(value)]
    elif isinstance(value, dict):
        out += [b"d", _U32.pack(len(value))]
        for key, item in value.items():
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        out += [_SEQUENCE_TAGS[next(t for t in _SEQUENCE_TAGS if isinstance(value, t))]]
        out.append(_U32.pack(len(value)))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise BridgeError(
            f"a {type(value).__name__} value cannot cross the sandbox boundary; only None, bool, "
            "int, float, complex, str, bytes and lists, tuples, dicts and sets of them can"
        )


def decode(data: bytes) -> Any:
    """Rebuild a value from `encode`'s output as exact built-in types; `BridgeError` if malformed."""
    try:
        value, end = _decode(memoryview(data), 0, 0)
    except (IndexError, struct.error, UnicodeDecodeError, TypeError, OverflowError) as exc:
        raise BridgeError(f"malformed value ({exc})") from None
    if end != len(data):
        raise BridgeError("malformed value (trailing bytes)")
    return value


def _decode(data: memoryview, at: int, depth: int) -> tuple[Any, int]:
    """The value encoded at ``data[at:]`` and the offset after it."""
    if depth > MAX_DEPTH:
        raise BridgeError(f"the value is nested more than {MAX_DEPTH} levels deep")
    tag, at = bytes(data[at : at + 1]), at + 1
    if tag in _CONSTANTS:
        return _CONSTANTS[tag], at
    if tag == b"f":
        return _F64.unpack_from(data, at)[0], at + 8
    if tag == b"c":
        return complex(*struct.unpack_from("<dd", data, at)), at + 16
    (size,) = _U32.unpack_from(data, at)
    at += 4
    if tag in (b"i", b"s", b"b"):
        if at + size > len(data):
            raise BridgeError("malformed value (truncated)")
        raw = bytes(data[at : at + size])
        value = int.from_bytes(raw, "little", signed=True) if tag == b"i" else raw
        return (raw.decode("utf-8", "surrogatepass") if tag == b"s" else value), at + size
    if size > len(data) - at:  # every item takes at least one byte
        raise BridgeError("malformed value (truncated)")
    items = []
    for _ in range(size * 2 if tag == b"d" else size):
        item, at = _decode(data, at, depth + 1)
        items.append(item)
    if tag == b"d":
        return dict(zip(items[::2], items[1::2], strict=True)), at
    kind = next((kind for kind, code in _SEQUENCE_TAGS.items() if code == tag), None)
    if kind is None:
        raise BridgeError(f"malformed value (unknown tag {tag!r})")
    return kind(items), at


def send(fd: int, message: Any) -> None:
    """Write ``message`` to ``fd`` (`encode`, then `write_message`)."""
    write_message(fd, encode(message))


def write_message(fd: int, data: bytes) -> None:
    """Write the encoded message ``data`` to ``fd``, prefixed with its length."""
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int) -> Any:
    """Read one message written by `send`; None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise BridgeError(f"a message of {length} bytes is over the limit")
    body = _read_exact(fd, length)
    return None if body is None else decode(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``fd``; None if it ends first."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Channel:
    """The judge's end of the pipes to the candidate process."""

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid, self.requests, self.replies = pid, requests, replies

    def receive(self) -> dict[str, Any]:
        """The candidate's next message; `ProgramExit` if it died or sent something malformed."""
        try:
            message = receive(self.replies)
        except (OSError, BridgeError) as exc:
            raise ProgramExit("error BridgeError") from exc
        if message is None:
            raise ProgramExit(_death(self.pid))
        if type(message) is not dict:
            raise ProgramExit("error BridgeError")
        return message

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call the program's ``name(*args, **kwargs)`` in the candidate process."""
        # A test's own argument that cannot cross raises its BridgeError here, in the test.
        data = encode({"call": name, "args": list(args), "kwargs": kwargs})
        try:
            write_message(self.requests, data)
        except OSError:  # the candidate is gone; a test's ``except Exception`` must not see it
            raise ProgramExit(_death(self.pid)) from None
        reply = self.receive()
        if "ok" in reply:
            return reply["ok"]
        if "bad" in reply:
            raise BridgeFailure(str(reply["bad"]))
        raise relayed(reply.get("raise"))


class BridgeFailure(BaseException):
    """The program returned a value that cannot cross the boundary (no test may catch it)."""


class Remote:
    """A function of the program, called in the candidate process."""

    def __init__(self, name: str, channel: Channel) -> None:
        self.__name__ = self.__qualname__ = name
        self._channel = channel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__} in the sandboxed program>"


def relayed(raised: Any) -> BaseException:
    """The judge-side exception for ``[name, message]`` raised in the candidate process."""
    import builtins

    name, message = raised if type(raised) is list and len(raised) == 2 else ["?", ""]
    name = name if type(name) is str and name.isidentifier() else "Exception"
    message = message if type(message) is str else ""
    cls = getattr(builtins, name, None)
    # A StopIteration would end whatever iteration called the candidate (``all(map(candidate,
    # cases))`` would be True), so it reaches the tests only as a ProgramError.
    if name in ("StopIteration", "StopAsyncIteration"):
        return ProgramError(name, message)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # an exception class with a different signature (UnicodeDecodeError)
            return ProgramError(name, message)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return ProgramExit(f"error {name}")
    return ProgramError(name, message)


def _death(pid: int) -> str:
    """The verdict for a candidate process that closed its pipe: wait for it and say how it ended."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == _signal.SIGXCPU:
            return "timeout"
        how = f"killed by {_signal_name(number)}"
    else:
        how = f"exited with code {os.waitstatus_to_exitcode(status)}"
    return f"died {how}"


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9: what `signal.Signals` would say, without importing enum."""
    for name in dir(_signal):
        if name.startswith("SIG") and "_" not in name and getattr(_signal, name) == number:
            return name
    return f"signal {number}"


def judge(job: dict[str, Any], channel: Channel) -> str:
    """Run the benchmark's ``check`` on the program in the candidate process; return the verdict.

    Verdicts: "passed", "failed AssertionError", "error <exception name>", "died <how>",
    "timeout".
    """
    import builtins

    send(channel.requests, {"program": job["program"]})
    try:
        loaded = channel.receive()
    except ProgramExit as exc:
        return exc.verdict
    if "raise" in loaded:  # the program's top level raised; its traceback is on stderr already
        return _verdict_of(relayed(loaded["raise"]))
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    namespace.update(_program_names(loaded.get("names"), channel))
    try:
        exec(compile(job["test"], "<test>", "exec"), namespace)
        entry_point = job["entry_point"]
        if entry_point not in namespace:
            raise NameError(f"name {entry_point!r} is not defined")
        namespace["check"](namespace[entry_point])
    except BaseException as exc:
        print_traceback("<test>", job["test"])
        return _verdict_of(exc)
    return "passed"


def _verdict_of(exc: BaseException) -> str:
    """The verdict for an exception that ended the check."""
    if isinstance(exc, ProgramExit):
        return exc.verdict
    if isinstance(exc, AssertionError):
        return "failed AssertionError"
    if isinstance(exc, ProgramError):
        return f"error {exc.name}"
    return f"error {type(exc).__name__}"


def _program_names(names: Any, channel: Channel) -> dict[str, Any]:
    """The program's top-level names as the tests see them: proxies, stdlib modules, values.

    A name of a built-in (``abs``, ``len``, ``all``) is left out, so the tests always use the real
    one: with one shared namespace, as in the reference harness, ``def abs(x): return 0`` would
    pass every ``assert abs(candidate(x) - y) < 1e-6``.
    """
    import builtins

    found: dict[str, Any] = {}
    for name, entry in names.items() if type(names) is dict else ():
        if type(name) is not str or hasattr(builtins, name):
            continue
        kind = entry.get("k") if type(entry) is dict else None
        if kind == "call":
            found[name] = Remote(name, channel)
        elif kind == "module" and type(entry.get("m")) is str:
            module = entry["m"]
            if module.partition(".")[0] in getattr(sys, "stdlib_module_names", ()):
                try:
                    __import__(module)  # importlib would cost start-up time
                    found[name] = sys.modules[module]
                except ImportError:
                    pass
        elif kind == "value":
            found[name] = entry.get("v")
    return found


def serve_candidate(requests: int, replies: int, limits: list[int]) -> NoReturn:
    """The candidate process: limits, guard, run the program, then answer the judge's calls."""
    exit_now = os._exit
    _limit(limits, nproc=True)
    program = str(receive(requests)["program"])
    namespace: dict[str, Any] = {"__name__": "__main__"}
    _guard()
    try:
        exec(compile(program, "<program>", "exec"), namespace)
    except BaseException as exc:
        print_traceback("<program>", program)
        send(replies, {"raise": [type(exc).__name__, str(exc)]})
        exit_now(1)
    send(replies, {"names": _describe(namespace)})
    while (request := receive(requests)) is not None:
        try:
            function = namespace[request["call"]]
            result = function(*request["args"], **request["kwargs"])
        except BaseException as exc:
            print_traceback("<program>", program)
            send(replies, {"raise": [type(exc).__name__, str(exc)]})
            continue
        try:
            send(replies, {"ok": result})
        except BridgeError as exc:
            send(
                replies, {"bad": f"{request['call']} returned a value the tests cannot see: {exc}"}
            )
    exit_now(0)


def print_traceback(filename: str, source: str) -> None:
    """Print the exception being handled to stderr, showing lines of ``source`` as ``filename``.

    Imported only here, on the failure path: every module the runner imports costs start-up time.
    """
    try:
        import linecache
        import traceback

        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        traceback.print_exc()
        sys.stderr.flush()
    except BaseException:  # noqa: B036 - stderr over its size limit must not change the verdict
        pass


def _describe(namespace: dict[str, Any]) -> dict[str, Any]:
    """What the judge needs to know of each top-level name of the program."""
    import types

    described: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            described[name] = {"k": "module", "m": value.__name__}
        elif callable(value):
            described[name] = {"k": "call"}
        else:
            try:
                encode(value)
            except BridgeError:
                continue
            described[name] = {"k": "value", "v": value}
    return described


def _limit(limits: list[int], nproc: bool) -> None:
    """Set this process's limits: address space, file size, CPU seconds (in that order in
    ``limits``), no core dumps and, with ``nproc``, no new processes. The sandbox's uid is never
    root, which is exempt from ``RLIMIT_NPROC``; in the sandbox's own user namespace the count is
    of that namespace's processes (the judge is one, so none can start)."""
    import resource

    memory, fsize, cpu = limits
    table = [("RLIMIT_AS", memory, memory), ("RLIMIT_FSIZE", fsize, fsize)]
    table += [("RLIMIT_CPU", cpu, cpu + 1), ("RLIMIT_CORE", 0, 0)]
    table += [("RLIMIT_NPROC", 1, 1)] if nproc else []
    for name, soft, hard in table:
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (soft, hard))


def _guard() -> None:
    """Replace the dangerous parts of the standard library with functions that refuse.

    Stops accidents, not intent (ctypes still reaches libc): the operating system's sandbox is
    what isolates the program. Only modules that are already loaded or cheap to load are touched:
    shutil, subprocess and socket look these functions up at call time, so they refuse too.
    """
    import _posixsubprocess
    import _socket
    import faulthandler
    import posix

    faulthandler.disable()

    def blocked(name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> NoReturn:
            raise PermissionError(name + " is disabled in the sandbox")

        return refuse

    class RefusedSocket(_socket.socket):
        """socket.socket subclasses ``_socket.socket`` and calls its ``__init__``: refuse there."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("sockets are disabled in the sandbox")

    process = (
        "fork forkpty system popen kill killpg execv execve execl execle execlp execlpe "
        "execvp execvpe spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe "
        "posix_spawn posix_spawnp setsid setpgid setpgrp setuid setgid seteuid setegid "
        "setreuid setregid setresuid setresgid chroot"
    )
    files = (
        "remove unlink rmdir removedirs rename renames replace truncate ftruncate "
        "chmod fchmod lchmod chown fchown lchown link symlink mkfifo mknod"
    )
    table = [
        (os, process + " " + files),
        (posix, process + " " + files),
        (_posixsubprocess, "fork_exec"),
        (_socket, "socketpair"),
    ]
    for module, names in table:
        for name in names.split():
            if hasattr(module, name):
                setattr(module, name, blocked(module.__name__ + "." + name))
    _socket.socket = RefusedSocket  # type: ignore[misc]


def _make_undumpable() -> None:
    """Make this process non-dumpable, so a process of the same user without capabilities can
    neither ptrace it nor open its /proc/<pid>/fd, mem or environ (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _close_fds_except(keep: set[int]) -> None:
    """Close every descriptor from 3 up except those in ``keep``."""
    top = min(os.sysconf("SC_OPEN_MAX"), 65536) if hasattr(os, "sysconf") else 1024
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, max(top, low))


def main() -> NoReturn:
    """Judge process entry point. argv: marker fd, memory bytes, file-size bytes, CPU seconds.

    stdin: the encoded job (nonce, program, test code, entry point), read only after the
    candidate process is forked, so the nonce is never in its memory. The first line on the
    marker pipe, ``started``, tells the grader that the sandbox started.
    """
    marker_fd, limits = int(sys.argv[1]), [int(arg) for arg in sys.argv[2:5]]
    os.write(marker_fd, b"started\n")
    sys.path[:] = [path for path in sys.path if os.path.isabs(path)]
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    _make_undumpable()
    requests_in, requests_out = os.pipe()  # judge -> candidate
    replies_in, replies_out = os.pipe()  # candidate -> judge
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        _close_fds_except({requests_in, replies_out})  # the marker pipe among them
        serve_candidate(requests_in, replies_out, limits)
    os.close(requests_in)
    os.close(replies_out)
    job = decode(sys.stdin.buffer.read())
    _limit(limits, nproc=False)
    verdict = judge(job, Channel(pid, requests_out, replies_in))
    os.write(marker_fd, f"{job['nonce']} {verdict}\n".encode())
    try:  # reaped, so that its CPU time counts in the judge's (benchmarks/sandbox_throughput.py)
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # already reaped by `_death`
        pass
    os._exit(0 if verdict == "passed" else 1)


if __name__ == "__main__":
    main()
