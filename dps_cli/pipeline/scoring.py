"""The base model's mean per-token log p of every stored completion, cached in ``logp.parquet``.

Best-of-N and maj@N tie-breaking rank samples by ``mean_t log p(x_t | prompt, x_<t)`` under the
base model's untempered distribution. The run schema does not store per-token log p, so it is
derived from what is stored: the prompt (encoded exactly as `dps_cli.tasks.prompting.build_prompt`
encodes it; the stored ``prompt_tokens`` count is checked) and the completion's token ids, scored
in one teacher-forced forward pass per batch, in float32. Samples are never rewritten: scores
live in ``runs/<run>/logp.parquet``, one row per (question, seed) with a digest of the completion
ids, and are recomputed only for samples whose completion changed or that are new.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_cli.errors import DpsError
from dps_cli.runs.atomic import atomic_write_bytes
from dps_cli.runs.store import RunStore

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

LOGP_FILE = "logp.parquet"
#: Logit elements (batch x kept positions x vocabulary) one scoring batch may hold.
MAX_LOGIT_ELEMENTS = 1 << 27
SCORE_COLUMNS = ("question_id", "seed", "prompt", "prompt_tokens", "completion_ids")


def ensure_logp(run_dir: Path, device: str = "auto") -> pl.DataFrame:
    """(question_id, seed, logp_mean) for every sample of the run, scoring only what is new."""
    import polars as pl

    store = RunStore.open_existing(Path(run_dir))
    samples = store.scan().select(SCORE_COLUMNS).sort("question_id", "seed").collect()
    digests = [_digest(ids) for ids in samples["completion_ids"].to_list()]
    cached = _read_cache(store.root / LOGP_FILE)
    keys = list(zip(samples["question_id"].to_list(), samples["seed"].to_list(), strict=True))
    todo = [i for i, (key, digest) in enumerate(zip(keys, digests, strict=True))
            if cached.get(key, ("", math.nan))[0] != digest]  # fmt: skip
    scores = {key: value for key, (_, value) in cached.items()}
    if todo:
        spec = str(store.read_manifest().get("config", {}).get("model") or "")
        logger.info("Scoring %d completions of %s with %s", len(todo), store.root, spec)
        rows = [samples.row(i, named=True) for i in todo]
        values = score_completions(
            spec, [r["prompt"] for r in rows], [int(r["prompt_tokens"]) for r in rows],
            [list(r["completion_ids"] or []) for r in rows], device,
        )  # fmt: skip
        scores.update({keys[i]: value for i, value in zip(todo, values, strict=True)})
        frame = pl.DataFrame(
            {"question_id": [k[0] for k in keys], "seed": [k[1] for k in keys], "digest": digests,
             "logp_mean": [scores[k] for k in keys]},
            schema={"question_id": pl.String, "seed": pl.Int32, "digest": pl.String,
                    "logp_mean": pl.Float64},
        )  # fmt: skip
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        atomic_write_bytes(store.root / LOGP_FILE, buffer.getvalue())
    return pl.DataFrame(
        {"question_id": [k[0] for k in keys], "seed": [k[1] for k in keys],
         "logp_mean": [scores[k] for k in keys]},
        schema={"question_id": pl.String, "seed": pl.Int32, "logp_mean": pl.Float64},
    )  # fmt: skip


def score_completions(
    model: str,
    prompts: Sequence[str],
    prompt_tokens: Sequence[int],
    completions: Sequence[Sequence[int]],
    device: str = "auto",
) -> list[float]:
    """Mean per-token log p of each completion after its prompt (NaN for an empty completion)."""
    from dps_cli.models.loading import load_model
    from dps_cli.sampling.scoring import teacher_forced_mean_logp

    loaded = load_model(model, device)
    encoded = [_encode_prompt(loaded.tokenizer, p, n) for p, n in zip(prompts, prompt_tokens, strict=True)]
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    results: list[float] = []
    start = 0
    while start < len(encoded):
        stop = start + 1
        widest = len(completions[start])
        while stop < len(encoded) and (stop - start + 1) * (max(widest, len(completions[stop])) + 1) * vocab <= MAX_LOGIT_ELEMENTS:
            widest = max(widest, len(completions[stop]))
            stop += 1
        results += teacher_forced_mean_logp(loaded.model, encoded[start:stop], completions[start:stop])
        start = stop
    return results


def _encode_prompt(tokenizer: Any, prompt: str, expected: int) -> list[int]:
    """The prompt's ids as `build_prompt` made them; refuses a count that differs from the run's."""
    ids = (
        tokenizer.encode(prompt, add_special_tokens=False)
        if tokenizer.chat_template
        else tokenizer.encode(prompt)
    )
    if len(ids) != expected:
        raise DpsError(
            f"Re-encoding a stored prompt gives {len(ids)} tokens, but the run recorded {expected}: "
            "the tokenizer differs from the one the run was sampled with, so log p cannot be scored."
        )
    return list(ids)


def _digest(ids: Sequence[int] | None) -> str:
    return hashlib.sha1(repr(list(ids or [])).encode()).hexdigest()


def _read_cache(path: Path) -> dict[tuple[str, int], tuple[str, float]]:
    """(question_id, seed) -> (completion digest, logp_mean) from ``path``; empty if unreadable."""
    import polars as pl

    if not path.is_file():
        return {}
    try:
        frame = pl.read_parquet(path)
        return {(q, int(s)): (d, float(v)) for q, s, d, v in
                frame.select("question_id", "seed", "digest", "logp_mean").iter_rows()}  # fmt: skip
    except (OSError, pl.exceptions.PolarsError) as err:
        logger.warning("Ignoring unreadable %s (%s); scoring again", path, err)
        return {}
