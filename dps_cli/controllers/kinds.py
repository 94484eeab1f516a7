"""The registry of controller kinds: name -> lazily imported `base.ControllerKind`.

catboost is imported only by ``controllers/gbdt.py`` and torch only by ``controllers/mlp.py``,
so listing kinds or loading one kind never pulls in the other's library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dps_cli.registry import Registry

if TYPE_CHECKING:
    from dps_cli.controllers.base import ControllerKind

CONTROLLER_KINDS: Registry[ControllerKind] = Registry(
    "controller kind",
    {
        "gbdt": "dps_cli.controllers.gbdt:GBDT",
        "mlp-h": "dps_cli.controllers.mlp:MLP_H",
        "mlp-hq": "dps_cli.controllers.mlp:MLP_HQ",
    },
)
