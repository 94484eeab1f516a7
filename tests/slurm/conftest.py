"""The `slurm_cluster` fixture: a throwaway single-node Slurm (see cluster.py), one per session.

Tests that take it are skipped, with the reason, when the Slurm or munge binaries are missing
(``apt-get install slurm-wlm munge``) or when not running as root (slurmd must start jobs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm.cluster import Cluster, missing_binaries, start_cluster


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    """A running cluster; ``SLURM_CONF`` points sbatch & co. (and `dps`) at it meanwhile."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}): "
                    "apt-get install slurm-wlm munge")  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd must run as root")
    root = Path(tempfile.mkdtemp(prefix="dps-slurm-"))  # short: the munge socket path is limited
    cluster = start_cluster(root)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(root, ignore_errors=True)
