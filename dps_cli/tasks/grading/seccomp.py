"""The seccomp filter of the grading sandbox: the kernel keyring system calls fail with EPERM.

A new user namespace does not give a process a new session keyring: without this filter a graded
program could read the keys of the grading process's session keyring (issue #18). The filter is a
classic BPF program, written here by hand (no libseccomp), that bubblewrap installs with
``--seccomp FD`` just before it starts the judge, so it binds the judge, the candidate and every
process they could start. It refuses ``add_key``, ``request_key`` and ``keyctl`` for the machine's
own system call table and its 32-bit compatibility table; x32 calls on x86-64 and calls under any
other architecture fail with ENOSYS. Everything else is allowed: the other isolation comes from
the namespaces, the unprivileged uid and the resource limits.
"""

from __future__ import annotations

import errno
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JUMP_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JUMP_AT_LEAST = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RETURN = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
# Offsets in struct seccomp_data.
_NR_OFFSET = 0
_ARCH_OFFSET = 4
_X32_SYSCALL_BIT = 0x40000000
_INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

#: add_key, request_key, keyctl by audit architecture (linux/audit.h) for each machine whose
#: filter is known: the native table first, then the 32-bit compatibility table.
KEYRING_SYSCALLS: dict[str, tuple[tuple[int, tuple[int, int, int]], ...]] = {
    "x86_64": ((0xC000003E, (248, 249, 250)), (0x40000003, (286, 287, 288))),
    "aarch64": ((0xC00000B7, (217, 218, 219)), (0x40000028, (309, 310, 311))),
}


def keyring_filter(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default: this one) as bytes for ``bwrap --seccomp``, or None
    where its system call numbers are not known here."""
    machine = machine or platform.machine()
    if machine not in KEYRING_SYSCALLS:
        return None
    program = [(_LOAD_WORD, 0, 0, _ARCH_OFFSET)]
    for arch, numbers in KEYRING_SYSCALLS[machine]:
        block = _refuse_block(numbers, x32=arch == 0xC000003E)
        program.append((_JUMP_EQUAL, 0, len(block), arch))  # another architecture: skip
        program += block
    program.append((_RETURN, 0, 0, _ERRNO | errno.ENOSYS))
    return b"".join(_INSTRUCTION.pack(*instruction) for instruction in program)


def _refuse_block(numbers: tuple[int, ...], x32: bool) -> list[tuple[int, int, int, int]]:
    """Instructions that return EPERM for the system calls ``numbers`` and allow the rest
    (ENOSYS for every x32 call when ``x32``); each jump lands on the block's last two returns."""
    checks: list[tuple[int, int]] = [(_JUMP_AT_LEAST, _X32_SYSCALL_BIT)] if x32 else []
    checks += [(_JUMP_EQUAL, number) for number in numbers]
    block = [(_LOAD_WORD, 0, 0, _NR_OFFSET)]
    for index, (code, value) in enumerate(checks):
        refuse_at = len(checks) - index  # offset from the next instruction to the EPERM return
        if x32 and index == 0:
            refuse_at += 1  # to the ENOSYS return after it
        block.append((code, refuse_at, 0, value))
    block += [(_RETURN, 0, 0, _ALLOW), (_RETURN, 0, 0, _ERRNO | errno.EPERM)]
    if x32:
        block.append((_RETURN, 0, 0, _ERRNO | errno.ENOSYS))
    return block
