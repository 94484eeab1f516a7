"""Turns a finished chain into one sample row of the run schema (DESIGN §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dps_cli.config import SampleConfig
from dps_cli.sampling.results import ChainResult, CheckpointRecord
from dps_cli.sampling.smc import SMCResult

if TYPE_CHECKING:
    from dps_cli.pipeline.plan import ChainPlan


def _vector(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else np.asarray(values, dtype=np.float32).tolist()


def checkpoint_struct(record: CheckpointRecord) -> dict[str, Any]:
    return {
        "block": record.block, "k": record.k, "mcmc_perplexity": record.mcmc_perplexity,
        "mcmc_entropy": record.mcmc_entropy, "mcmc_self_confidence": record.mcmc_self_confidence,
        "acceptance_ratio": record.acceptance_ratio, "question_time_sec": record.question_time_sec,
        "current_k": record.current_k, "hidden": _vector(record.hidden), "p_enough": record.p_enough,
        "escalated": record.escalated,
    }


def smc_columns(result: ChainResult, particle_completions: list[str] | None) -> dict[str, Any]:
    """The Power-SMC columns: every particle's completion and final log weight, resamples, log Z."""
    if not isinstance(result, SMCResult):
        return {"particle_completions": None, "particle_log_weights": None, "resamples": None, "log_z": None}
    if particle_completions is None or len(particle_completions) != len(result.particles):
        raise ValueError("an SMC row needs the decoded completion of every particle")
    return {
        "particle_completions": particle_completions,
        "particle_log_weights": np.asarray(result.log_weights, dtype=np.float64).tolist(),
        "resamples": result.resamples,
        "log_z": float(result.log_z),
    }


def sample_row(config: SampleConfig, plan: ChainPlan, result: ChainResult, completion: str,
               answer: str | None, model_id: str,
               particle_completions: list[str] | None = None) -> dict[str, Any]:
    """One row per (question, seed); parameters live in columns, never in file names.

    ``particle_completions`` (Power-SMC only) are the decoded completions of every particle.
    """
    mh, smc = config.method in ("power", "dps"), config.method == "smc"
    return {
        "run_id": config.out.name,
        "task": config.bench,
        "question_id": plan.question.id,
        "seed": plan.seed,
        "shard": f"{config.shard[0]}/{config.shard[1]}",
        "model": model_id,
        "prompt": plan.prompt_text,
        "prompt_tokens": len(plan.prompt_ids),
        "reference": plan.question.reference,
        "choice_order": list(plan.choice_order) if plan.choice_order is not None else None,
        "completion": completion,
        "completion_ids": result.completion_ids.astype(np.int32).tolist(),
        "answer": answer,
        "method": config.method,
        "alpha": config.alpha if mh or smc else None,
        "temperature": config.proposal_temperature,
        "max_new_tokens": config.max_new_tokens,
        "blocks": config.blocks if mh else None,
        "k_initial": result.k_schedule[0] if result.k_schedule else None,
        "controller": config.controller,
        "tau": config.tau,
        "k_schedule": result.k_schedule,
        "final_k": result.final_k if mh else None,
        "proposals_attempted": result.proposals_attempted,
        "proposals_accepted": result.proposals_accepted,
        "tokens_generated": result.tokens_generated,
        "tokens_kept": int(result.completion_ids.shape[0]),
        "stopped_at_eos": result.stopped_at_eos,
        "logq_bound": result.logq_bound,
        "wall_time_s": result.wall_time_s,
        "hidden_layer": None if smc else config.hidden_layer,  # SMC records no hidden states
        "checkpoints": [checkpoint_struct(r) for r in result.checkpoints],
        "question_embedding": _vector(result.question_embedding),
        **smc_columns(result, particle_completions),
    }
