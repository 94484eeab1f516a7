"""The one declaration of the sample-row schema (DESIGN §3).

One row per (question, seed). Nested data are native Arrow lists and structs, never JSON strings.
Bump the major part of SCHEMA_VERSION when a column changes meaning or disappears; readers refuse
a newer major version. A column added in a minor version is listed in ADDED_COLUMNS: parts
written before it lack the column and read back with nulls there.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.2"

CHECKPOINT_TYPE = pa.struct(
    [
        ("block", pa.int32()),  # 1-based index of the finished block
        ("k", pa.int32()),  # budget in force during that block
        ("mcmc_perplexity", pa.float32()),
        ("mcmc_entropy", pa.float32()),
        ("mcmc_self_confidence", pa.float32()),
        ("acceptance_ratio", pa.float32()),
        ("question_time_sec", pa.float32()),
        ("current_k", pa.int32()),
        ("hidden", pa.list_(pa.float32())),  # layer-L mean over trajectories so far; null if off
        ("p_enough", pa.float32()),  # controller output; null for fixed-k runs
        ("escalated", pa.bool_()),  # whether k was raised after this checkpoint
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("task", pa.string()),
        ("question_id", pa.string()),
        ("seed", pa.int32()),
        ("shard", pa.string()),  # "i/n" of the sharding that produced the row
        ("model", pa.string()),
        ("prompt", pa.string()),  # the prompt text as given to the model (template applied)
        ("prompt_tokens", pa.int32()),
        ("reference", pa.string()),
        ("choice_order", pa.list_(pa.int8())),  # multiple choice: shown position -> original index
        ("completion", pa.string()),
        ("completion_ids", pa.list_(pa.int32())),
        ("answer", pa.string()),  # extracted at sampling time; null if none found
        ("method", pa.string()),  # power | dps | temperature | greedy | smc
        ("alpha", pa.float32()),
        ("temperature", pa.float32()),  # proposal temperature (1/alpha for power and dps)
        ("max_new_tokens", pa.int32()),
        ("blocks", pa.int32()),
        ("k_initial", pa.int32()),
        ("controller", pa.string()),
        ("tau", pa.float32()),
        ("k_schedule", pa.list_(pa.int32())),  # k in force for each block that ran
        ("final_k", pa.int32()),
        ("proposals_attempted", pa.int32()),
        ("proposals_accepted", pa.int32()),
        ("tokens_generated", pa.int32()),  # every sampled token, rejected proposals included
        ("tokens_kept", pa.int32()),  # length of the final completion in tokens
        ("stopped_at_eos", pa.bool_()),
        # the largest summed bound, over any suffix of any sequence the chain's MH ratios read,
        # on how far a top-K backend's log q lies above the true one (|error of log r| <= it);
        # 0 where log q is exact (the hf backend), null in parts written before schema 1.1
        ("logq_bound", pa.float32()),
        ("wall_time_s", pa.float64()),
        ("hidden_layer", pa.int32()),
        ("checkpoints", pa.list_(CHECKPOINT_TYPE)),
        ("question_embedding", pa.list_(pa.float32())),
        # Power-SMC (method smc; null for other methods and in parts written before schema 1.2):
        # every particle's completion (``completion`` is the drawn one), its final log weight
        # (after the last resampling), how many times the particles were resampled, and the
        # log normalizing-constant estimate (log of an unbiased estimate of sum_x p(x)^alpha)
        ("particle_completions", pa.list_(pa.string())),
        ("particle_log_weights", pa.list_(pa.float64())),
        ("resamples", pa.int32()),
        ("log_z", pa.float64()),
    ],
    metadata={b"dps_schema_version": SCHEMA_VERSION.encode()},
)

# Columns added after 1.0, with the version that added them: older parts may lack them.
ADDED_COLUMNS = {
    "logq_bound": "1.1",
    **dict.fromkeys(("particle_completions", "particle_log_weights", "resamples", "log_z"), "1.2"),
}
REQUIRED_COLUMNS = tuple(name for name in SAMPLE_SCHEMA.names if name not in ADDED_COLUMNS)

# Key columns that identify a row; resume skips pairs already stored.
ROW_KEY = ("question_id", "seed")


def describe_schema() -> str:
    """A stable text rendering of the schema, compared against tests/golden/run_schema.txt."""
    lines = [f"schema_version: {SCHEMA_VERSION}"]
    lines += [f"{f.name}: {f.type}" for f in SAMPLE_SCHEMA]
    return "\n".join(lines) + "\n"
