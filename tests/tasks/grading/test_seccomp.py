"""The sandbox's seccomp filter: what it answers for every architecture and system call that can
reach it, read by a small classic-BPF interpreter, and then live, in the sandbox (issue #18)."""

from __future__ import annotations

import ast
import errno
import platform
import struct
import subprocess
import sys

import pytest

from dps_cli.tasks.grading import bubblewrap, seccomp
from dps_cli.tasks.grading.sandbox import run_tests

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
X32 = 0x40000000
# Audit architectures (linux/audit.h) and keyring numbers from the kernel's system call tables,
# written out again here so that a slip in the module's table shows.
X86_64, I386, AARCH64, ARM = 0xC000003E, 0x40000003, 0xC00000B7, 0x40000028
KEYRING = {X86_64: (248, 249, 250), I386: (286, 287, 288), AARCH64: (217, 218, 219)}
KEYRING[ARM] = (309, 310, 311)
MACHINES = {"x86_64": (X86_64, I386), "aarch64": (AARCH64, ARM)}


def run_filter(program: bytes, arch: int, nr: int) -> int:
    """What the kernel would answer for system call ``nr`` under ``arch``: a tiny interpreter of
    the instructions the filter may use, checking what the kernel's verifier checks."""
    instructions = [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]
    assert len(program) % 8 == 0 and 0 < len(instructions) <= 4096
    data = struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *[0] * 6)
    pc, accumulator = 0, 0
    while True:
        code, jt, jf, k = instructions[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            assert k % 4 == 0 and k + 4 <= len(data)
            (accumulator,) = struct.unpack_from("=I", data, k)
            pc += 1
        elif code in (0x15, 0x35):  # BPF_JMP | BPF_JEQ / BPF_JGE | BPF_K
            taken = accumulator == k if code == 0x15 else accumulator >= k
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return int(k)
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        assert pc < len(instructions), "a jump past the end"


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_the_keyring_calls_are_refused_under_each_architecture_and_nothing_else(
    machine: str,
) -> None:
    program = seccomp.keyring_filter(machine)
    assert program is not None
    for arch in MACHINES[machine]:
        for nr in range(1024):
            expected = EPERM if nr in KEYRING[arch] else ALLOW
            assert run_filter(program, arch, nr) == expected, (hex(arch), nr)


def test_x32_calls_and_unknown_architectures_get_enosys() -> None:
    program = seccomp.keyring_filter("x86_64")
    assert program is not None
    for nr in [*KEYRING[X86_64], 0, 39, 512, 547, 0x3FFFFFFF]:
        assert run_filter(program, X86_64, X32 | nr) == ENOSYS
    assert run_filter(program, X86_64, 0xFFFFFFFF) == ENOSYS  # nr -1
    # The i386 table has no x32 bit: its high numbers are not refused (the kernel says ENOSYS).
    assert run_filter(program, I386, X32 | 288) == ALLOW
    for arch in (AARCH64, ARM, 0x40000028 & ~0x40000000, 0):
        assert run_filter(program, arch, 250) == ENOSYS
    arm_program = seccomp.keyring_filter("aarch64")
    assert arm_program is not None
    assert run_filter(arm_program, X86_64, 219) == ENOSYS
    assert run_filter(arm_program, AARCH64, X32 | 219) == ALLOW  # no x32 on aarch64
    assert seccomp.keyring_filter("riscv64") is None


# i386 keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING) through ``int 0x80`` from a 64-bit
# process (the compatibility entry, which seccomp sees as AUDIT_ARCH_I386); prints its result.
INT80 = """
import ctypes, mmap
code = bytes.fromhex("53B82001000031DBB9FDFFFFFF31D2CD805BC3")  # push rbx; ...; int 0x80; pop rbx; ret
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
i386_keyctl = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
"""
LIVE = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(nr, *args):\n"
    "    result = libc.syscall(nr, *args)\n"
    "    return result if result >= 0 else -ctypes.get_errno()\n"
    "outcome = {{\n"
    "    'add_key': call({0}, b'user', b'dps-seccomp-test', b'x', 1, -3),\n"
    "    'request_key': call({1}, b'user', b'dps-seccomp-test', None, 0),\n"
    "    'keyctl': call({2}, 0, -3, 0),\n"
    "    'x32 keyctl': call({3}, 0, -3, 0),\n"
    "    'getppid': call({4}),\n"
    "}}\n"
)


@pytest.mark.skipif(
    bubblewrap.unavailable_reason() is not None,
    reason=f"bubblewrap cannot start here: {bubblewrap.unavailable_reason()}",
)
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the i386 and x32 calls are x86-64's")
def test_in_the_sandbox_each_table_is_refused_and_other_calls_work() -> None:
    add_key, request_key, keyctl = KEYRING[X86_64]
    outside = subprocess.run(
        [sys.executable, "-c", INT80 + "print(i386_keyctl())"], capture_output=True, text=True
    )
    i386_available = outside.returncode == 0 and int(outside.stdout) != -errno.ENOSYS
    attack = LIVE.format(add_key, request_key, keyctl, X32 | keyctl, 110)  # 110: getppid
    attack += (INT80 + "outcome['i386 keyctl'] = i386_keyctl()\n") if i386_available else ""
    attack += "assert False, outcome\ndef double(xs):\n    return xs\n"
    test = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
    result = run_tests(attack, test, "double")
    assert result.status == "failed", result.detail
    last = result.detail.strip().splitlines()[-1]
    outcome = ast.literal_eval(last.removeprefix("AssertionError: "))
    refused = {"add_key": -errno.EPERM, "request_key": -errno.EPERM, "keyctl": -errno.EPERM}
    refused["x32 keyctl"] = -errno.ENOSYS
    if i386_available:
        refused["i386 keyctl"] = -errno.EPERM
    assert {name: outcome[name] for name in refused} == refused
    assert outcome["getppid"] == 1  # allowed: the candidate's parent is the judge, pid 1
