"""Checks of torch and the devices it offers: CUDA (with each GPU's name and memory), MPS, CPU.

torch is imported here on purpose: the question is whether it imports on this machine (a
broken CUDA install fails at import, with an `OSError` from a shared library).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from dps_cli.config import DEFAULT_BATCH
from dps_cli.doctor.check import NO, YES, Check

GROUP = "compute"
GIB = 1024**3


def compute_checks() -> list[Check]:
    """torch, cuda, mps, cpu and the device ``--device auto`` picks."""
    try:
        import torch
    except (ImportError, OSError) as exc:
        reason = f"torch cannot be imported ({_first_line(exc)}); reinstall it (pip install dps-cli)"
        return [Check(GROUP, "torch", NO, reason), Check(GROUP, "device auto", NO, "needs torch")]
    return [
        Check(GROUP, "torch", YES, f"torch {torch.__version__} ({_build(torch)})"),
        cuda_check(torch),
        mps_check(torch),
        cpu_check(),
        auto_device_check(),
    ]


def cuda_check(torch: ModuleType) -> Check:
    """Each visible CUDA device with its memory, or why there is none."""
    if not torch.version.cuda and not getattr(torch.version, "hip", None):
        return Check(GROUP, "cuda", NO, "this torch is a CPU-only build; install a CUDA build of torch "
                     "(make TORCH_SPEC=... picks the wheel)")  # fmt: skip
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "no driver or no GPU"
        return Check(GROUP, "cuda", NO, f"torch has CUDA {torch.version.cuda} but sees no device ({hint})")
    devices = []
    try:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(f"cuda:{index} {props.name}, {props.total_memory / GIB:.1f} GiB")
    except RuntimeError as exc:  # a driver that lists a device but cannot open it
        return Check(GROUP, "cuda", NO, f"CUDA sees a device but cannot open it ({_first_line(exc)})")
    return Check(GROUP, "cuda", YES, "; ".join(devices))


def mps_check(torch: ModuleType) -> Check:
    """Apple's Metal device, or why not."""
    if sys.platform != "darwin":
        return Check(GROUP, "mps", NO, f"MPS is Apple's GPU backend and this system is {sys.platform}")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return Check(GROUP, "mps", NO, "this torch was built without MPS")
    if not mps.is_available():
        return Check(GROUP, "mps", NO, "MPS needs macOS 12.3 or later on Apple silicon")
    return Check(GROUP, "mps", YES, "Apple GPU available")


def cpu_check() -> Check:
    """Cores and memory: always usable, and what a CPU run has to work with."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = _physical_memory()
    size = f", {memory / GIB:.0f} GiB memory" if memory else ""
    return Check(GROUP, "cpu", YES, f"{cores} cores{size}")


def auto_device_check() -> Check:
    """What ``dps sample --device auto`` will use, with its dtype and default batch."""
    from dps_cli.models.loading import pick_device, pick_dtype

    device = pick_device("auto")
    return Check(GROUP, "device auto", YES, f"--device auto uses {device} ({pick_dtype(device)}, "
                 f"{DEFAULT_BATCH[device]} chains per batch)")  # fmt: skip


def _build(torch: ModuleType) -> str:
    if torch.version.cuda:
        return f"CUDA {torch.version.cuda} build"
    if getattr(torch.version, "hip", None):
        return f"ROCm {torch.version.hip} build"
    return "CPU-only build"


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on every platform (Windows)
        return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
