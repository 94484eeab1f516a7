"""Wires a `SampleConfig` to the engine: which driver each chain runs, batch size, controller."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from dps_cli.config import SampleConfig
from dps_cli.models.loading import LoadedModel
from dps_cli.pipeline.plan import chain_rng
from dps_cli.sampling.backend import Backend
from dps_cli.sampling.factory import make_backend
from dps_cli.sampling.policies import DynamicK, FixedK
from dps_cli.sampling.power import PowerSettings, power_chain, sampling_chain
from dps_cli.sampling.results import CheckpointRecord
from dps_cli.sampling.smc import SMCSettings, smc_chain

if TYPE_CHECKING:
    from dps_cli.pipeline.plan import ChainPlan

#: Tau for a controller whose replay recommends none (no held-out pairs): the middle of (0, 1).
FALLBACK_TAU = 0.5

logger = logging.getLogger(__name__)


def build_engine(config: SampleConfig, loaded: LoadedModel) -> Backend:
    """The run's sampling backend (``config.backend``), with a batched controller for DPS."""
    hidden_layer = None if config.method == "smc" else config.hidden_layer  # SMC records none
    if hidden_layer is not None and hidden_layer > loaded.num_layers:
        from dps_cli.errors import UserError

        raise UserError(f"--hidden-layer {hidden_layer} exceeds the model's {loaded.num_layers} layers.",
                        "Pick a smaller layer or 'none'.")
    decider = _controller_decider(config, loaded) if config.method == "dps" else None
    return make_backend(config.backend, loaded.model, loaded.eos_token_ids,
                        max_batch=config.resolved_batch_size(loaded.device), hidden_layer=hidden_layer,
                        decider=decider)


def make_driver(config: SampleConfig, plan: ChainPlan, loaded: LoadedModel) -> Any:
    """The generator that runs one chain under the configured method."""
    rng = chain_rng(config.run_seed, plan.question.id, plan.seed)
    hidden = config.hidden_layer is not None
    if config.method == "smc":
        return smc_chain(plan.prompt_ids, smc_settings(config, loaded.eos_token_ids), rng)
    if config.method in ("temperature", "greedy"):
        return sampling_chain(plan.prompt_ids, config.max_new_tokens, config.proposal_temperature, rng,
                              loaded.eos_token_ids, hidden)
    settings = PowerSettings(alpha=config.alpha, max_new_tokens=config.max_new_tokens, blocks=config.blocks,
                             checkpoints=config.active_checkpoints, hidden=hidden, after_eos=config.after_eos,
                             eos_token_ids=loaded.eos_token_ids)
    if config.method == "dps":
        assert config.tau is not None, "resolve tau with with_default_tau() first"
        return power_chain(plan.prompt_ids, settings, DynamicK(tau=config.tau), rng)
    return power_chain(plan.prompt_ids, settings, FixedK(config.k), rng)


def smc_settings(config: SampleConfig, eos_token_ids: tuple[int, ...]) -> SMCSettings:
    """The Power-SMC settings of ``config`` (--particles, --smc-chunk, --smc-ess, --smc-bridge)."""
    return SMCSettings(alpha=config.alpha, max_new_tokens=config.max_new_tokens, particles=config.particles,
                       chunk=config.smc_chunk, ess_threshold=config.smc_ess, bridge=config.smc_bridge,
                       eos_token_ids=eos_token_ids)


def with_default_tau(config: SampleConfig) -> SampleConfig:
    """The one place tau is resolved: --tau, else the controller's recommended tau, else FALLBACK_TAU.

    `dps sample`, the in-process reproduction and its Slurm jobs all pass tau=None for "the
    controller's choice" and resolve it here, when sampling starts, so they agree.
    """
    if config.method != "dps" or config.tau is not None:
        return config
    from dataclasses import replace

    from dps_cli.controllers.artifacts import load_controller

    assert config.controller is not None
    card = load_controller(config.controller, config.registry).card
    if card.recommended_tau is None:
        logger.warning("controller %s recommends no tau (its held-out sweep had no question with "
                       "runs at every k); using tau %s", config.controller, FALLBACK_TAU)  # fmt: skip
        return replace(config, tau=FALLBACK_TAU)
    return replace(config, tau=float(card.recommended_tau))


def _controller_decider(config: SampleConfig, loaded: LoadedModel) -> Any:
    """Load the controller once and answer batches of checkpoint records with it."""
    from dps_cli.controllers.artifacts import check_compatible, load_controller
    from dps_cli.controllers.features import CheckpointFeatures

    assert config.controller is not None
    controller = load_controller(config.controller, config.registry)
    check_compatible(controller, model_id=loaded.source.model_id, hidden_layer=config.hidden_layer,
                     hidden_size=loaded.hidden_size)

    def decide(records: list[CheckpointRecord]) -> np.ndarray:
        batch = [CheckpointFeatures(scalars=scalar_features(r), hidden=r.hidden,
                                    question_embedding=r.question_embedding) for r in records]
        return np.asarray(controller.predict_p_enough(batch), dtype=np.float64)

    return decide


def scalar_features(record: CheckpointRecord) -> dict[str, float]:
    """The controller's scalar inputs, read off the record by their names."""
    from dps_cli.controllers.features import SCALAR_FEATURES

    return {name: float(getattr(record, name)) for name in SCALAR_FEATURES}
