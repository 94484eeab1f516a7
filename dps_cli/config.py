"""Frozen, validated settings objects; every setting reaches code through one of these."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError

METHODS = ("power", "dps", "temperature", "greedy", "smc")
# What a power chain does after the block in which its state ends at EOS (DESIGN §1): "stop" is the
# published algorithm and the cost the paper assumes (biased); "continue" keeps running MH at every
# later block's length (exact, k proposals per remaining block); "jump" runs one MH block at the
# final length and stops (exact, k proposals in all).
AFTER_EOS_MODES = ("stop", "continue", "jump")
# jump is the default: exact in the limit, and on the embedded model it spent 3.3% more proposal
# tokens per chain than stop (docs/results.md, "After-EOS modes"), where continue spent 27% more.
DEFAULT_AFTER_EOS = "jump"
BACKENDS = ("auto", "hf", "vllm")  # sampling backends (dps_cli.sampling.backend)
PAPER_ALPHA = 4.0
PAPER_MAX_NEW_TOKENS = 3072
PAPER_BLOCKS = 16
DEFAULT_K = 8
DEFAULT_CHECKPOINTS = (2, 4, 8)
DEFAULT_HIDDEN_LAYER = 11
EMBEDDED_MODEL = "smollm2-135m"  # the embedded default model's alias (dps_cli.models.embedded)
DEFAULT_BATCH = {"cpu": 16, "mps": 16, "cuda": 64}  # chains per batch by device; decoding is memory-bound
DEFAULT_FLUSH_EVERY = 16
# Power-SMC (DESIGN §1; dps_cli.sampling.smc): particles N, tokens per round m, resampling when
# ESS < rho * N, and M tokens of exponent bridging (0 = off). N = 8: the proposal count of the fixed
# k = 8 baseline. m = 16: on the embedded model (48 tokens, N = 8, CPU) one round per completion
# (m = 48) took 2-3x the time of m = 4 or 16 and sampled 30% more tokens (no pruning of weak
# particles midway), while 4 and 16 were within the shared machine's noise; on hf every round
# copies each particle's cache (O(T^2 / m) over T tokens), 4x more copies at m = 4 than at 16.
# rho = 0.5 and no bridge: the usual ESS rule, and the target p^alpha from the first token.
SMC_DEFAULT_PARTICLES = 8
SMC_DEFAULT_CHUNK = 16
SMC_DEFAULT_ESS = 0.5
SMC_DEFAULT_BRIDGE = 0
MAX_SEEDS = 100_000  # sample seeds per question; a typo such as 0-99999999999 must not exhaust memory
MAX_SEED = 2**31 - 1  # seeds are stored as int32
# Bounds on values that reach numpy, torch and the int32/float32 Parquet columns. Beyond them a run
# would overflow a column at its first write or never end; each is stated in `dps sample --help`.
MAX_K = 1024  # MH proposals per block
MAX_NEW_TOKENS = 2**17  # tokens per completion (131072, above any released model's context)
MAX_BATCH_SIZE = 65_536  # chains decoded together
TEMPERATURE_RANGE = (1e-3, 1e3)  # proposal temperature (1/alpha); float32 keeps its value exactly


@dataclass(frozen=True)
class KSchedule:
    """DPS's budget schedule (DESIGN §1): start at k = ``start``; at a checkpoint, escalate by
    ``step`` while ``1 - p_enough > tau`` and ``k < max``. Its ladder is the k of the fixed-k runs
    that train and replay a controller; the last rung is the fixed-k reference."""

    start: int = 2
    step: int = 2
    max: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.max or self.step < 1 or (self.max - self.start) % self.step:
            raise ValueError(f"k schedule start={self.start}, step={self.step}, max={self.max}: "
                             "max - start must be a non-negative multiple of step")

    def ladder(self) -> tuple[int, ...]:
        """Every k the schedule can reach, in order: (2, 4, 6, 8)."""
        return tuple(range(self.start, self.max + 1, self.step))

    def next_k(self, k: int, p_enough: float, tau: float) -> int:
        """The budget after a checkpoint at which the controller answered ``p_enough``."""
        if 1.0 - p_enough > tau and k < self.max:
            return min(k + self.step, self.max)
        return k


#: The one k schedule: the live DPS policy, the tau replay, collect's labels and the profiles.
K_SCHEDULE = KSchedule()


@dataclass(frozen=True)
class SampleConfig:
    """Everything `dps sample` needs; validated on construction with messages that say what to do."""

    bench: str
    out: Path
    model: str = EMBEDDED_MODEL
    method: str = "power"
    k: int = DEFAULT_K
    alpha: float = PAPER_ALPHA
    temperature: float | None = None  # temperature method only; defaults to 1/alpha
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS
    blocks: int = PAPER_BLOCKS
    after_eos: str = DEFAULT_AFTER_EOS
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS
    hidden_layer: int | None = DEFAULT_HIDDEN_LAYER
    controller: str | None = None
    tau: float | None = None
    registry: Path | None = None
    seeds: tuple[int, ...] = (0,)
    limit: int | None = None
    offset: int = 0
    shard: tuple[int, int] = (0, 1)
    data: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None
    backend: str = "auto"  # auto | hf | vllm; the pipeline resolves auto before writing the manifest
    run_seed: int = 0
    particles: int = SMC_DEFAULT_PARTICLES  # smc only, as are the three below
    smc_chunk: int = SMC_DEFAULT_CHUNK
    smc_ess: float = SMC_DEFAULT_ESS
    smc_bridge: int = SMC_DEFAULT_BRIDGE
    flush_every: int = DEFAULT_FLUSH_EVERY
    command: str = field(default="", compare=False)  # provenance, not a setting

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"Unknown method {self.method!r}.", f"Use one of: {', '.join(METHODS)}.")
        if self.max_new_tokens < 1 or self.blocks < 1:
            raise UserError("--max-new-tokens and --blocks must be positive.")
        _check_at_most("--max-new-tokens", self.max_new_tokens, MAX_NEW_TOKENS)
        _check_at_most("--blocks", self.blocks, MAX_NEW_TOKENS)
        if self.method in ("power", "dps") and self.max_new_tokens % self.blocks:
            raise UserError(
                f"--max-new-tokens {self.max_new_tokens} must be divisible by --blocks {self.blocks}.",
                f"Try --max-new-tokens {self.max_new_tokens // self.blocks * self.blocks or self.blocks}.",
            )
        if self.k < 1:
            raise UserError(f"--k {self.k} must be at least 1.")
        _check_at_most("--k", self.k, MAX_K)
        if not 0 <= self.run_seed <= MAX_SEED:
            raise UserError(f"--run-seed {self.run_seed} must lie between 0 and {MAX_SEED}.")
        if self.after_eos not in AFTER_EOS_MODES:
            raise UserError(f"Unknown --after-eos {self.after_eos!r}.", f"Use one of: {', '.join(AFTER_EOS_MODES)}.")
        for flag, value in (("--alpha", self.alpha), ("--temperature", self.temperature), ("--tau", self.tau)):
            if value is not None and not math.isfinite(value):
                raise UserError(f"{flag} {value} must be a finite number.")
        if self.method in ("power", "dps", "smc") and not self.alpha > 1:
            raise UserError(f"--alpha {self.alpha} must be greater than 1 (the power of p^alpha).")
        if self.temperature is not None and self.temperature <= 0:
            raise UserError(f"--temperature {self.temperature} must be positive; use --method greedy for 0.")
        low, high = TEMPERATURE_RANGE
        if not low <= self.alpha <= high:
            raise UserError(f"--alpha {self.alpha} must lie between {low:g} and {high:g} (the proposal temperature "
                            "is 1/alpha).", "Use --method greedy for the limit of a large alpha." if self.alpha > high else None)
        if self.temperature is not None and not low <= self.temperature <= high:
            raise UserError(f"--temperature {self.temperature} must lie between {low:g} and {high:g}.",
                            "Use --method greedy for temperature 0." if self.temperature < low else None)
        if self.method == "dps" and not self.controller:
            raise UserError("--method dps needs --controller NAME.", "List trained controllers with 'dps controllers list'.")
        if self.tau is not None and not 0 < self.tau < 1:
            raise UserError(f"--tau {self.tau} must lie strictly between 0 and 1.")
        if self.offset < 0:
            raise UserError(f"--offset {self.offset} must be >= 0.")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit} must be at least 1.")
        if not self.seeds:
            raise UserError("--seeds selects no seed.")
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise UserError(f"--shard {index}/{count} is invalid.", "Use i/n with 0 <= i < n.")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size} must be at least 1.")
        if self.batch_size is not None:
            _check_at_most("--batch-size", self.batch_size, MAX_BATCH_SIZE)
        # Checkpoints past the last block are dropped (the default 2,4,8 with fewer blocks); with
        # none left, a DPS run would never ask its controller, so that is refused.
        if self.method == "dps" and not any(1 <= block <= self.blocks for block in self.checkpoints):
            raise UserError(f"--checkpoints {format_blocks(self.checkpoints)}: no block lies within --blocks "
                            f"{self.blocks}, so the controller would never be asked.",
                            f"Pick checkpoints between 1 and {self.blocks}.")
        if self.backend not in BACKENDS:
            raise UserError(f"Unknown backend {self.backend!r}.", f"Use one of: {', '.join(BACKENDS)}.")
        if self.flush_every < 1:
            raise UserError(f"--flush-every {self.flush_every} must be at least 1.")
        if self.hidden_layer is not None and self.hidden_layer < 0:
            raise UserError(f"--hidden-layer {self.hidden_layer} must be >= 0 or 'none'.")
        self._check_smc()

    def _check_smc(self) -> None:
        """The Power-SMC settings: ranges always, the rest only for --method smc."""
        if self.particles < 1:
            raise UserError(f"--particles {self.particles} must be at least 1.")
        if self.smc_chunk < 1:
            raise UserError(f"--smc-chunk {self.smc_chunk} must be at least 1.")
        if not 0 < self.smc_ess <= 1:  # also refuses nan
            raise UserError(f"--smc-ess {self.smc_ess} must lie in (0, 1]: resample when ESS < rho * N.")
        if self.smc_bridge < 0:
            raise UserError(f"--smc-bridge {self.smc_bridge} must be >= 0 (0: no bridging).")
        if self.method != "smc":
            return
        if self.controller is not None:
            raise UserError("--controller sets k for MH (--method dps); --method smc takes none.",
                            "Drop --controller, or use --method dps.")
        if self.batch_size is not None:
            check_particles_fit(self.particles, self.batch_size, "--batch-size")

    @property
    def proposal_temperature(self) -> float:
        """1/alpha for power and dps; the chosen temperature for plain sampling; 0 for greedy."""
        if self.method == "greedy":
            return 0.0
        if self.method == "temperature" and self.temperature is not None:
            return self.temperature
        return 1.0 / self.alpha

    @property
    def active_checkpoints(self) -> tuple[int, ...]:
        """Checkpoints that fall within the run's blocks (power and dps only)."""
        if self.method not in ("power", "dps"):
            return ()
        return tuple(sorted(b for b in set(self.checkpoints) if 1 <= b <= self.blocks))

    def resolved_batch_size(self, device: str) -> int:
        """``batch_size``, else the default for ``device`` (a resolved device, e.g. ``cuda:0``)."""
        return self.batch_size or DEFAULT_BATCH.get(device.split(":")[0], DEFAULT_BATCH["cpu"])

    def identity(self) -> dict[str, Any]:
        """The settings that define a run: rerunning with the same identity resumes it."""
        mh, smc = self.method in ("power", "dps"), self.method == "smc"
        return {
            "task": self.bench,
            "data": str(self.data) if self.data else None,
            "model": self.model,
            "method": self.method,
            "alpha": self.alpha if mh or smc else None,
            "k": (K_SCHEDULE.start if self.method == "dps" else self.k) if mh else None,
            "temperature": self.proposal_temperature,
            "max_new_tokens": self.max_new_tokens,
            "blocks": self.blocks if mh else None,
            "after_eos": self.after_eos if mh else None,
            "checkpoints": list(self.active_checkpoints),
            "hidden_layer": None if smc else self.hidden_layer,  # SMC records no hidden states
            "controller": self.controller,
            "tau": self.tau,
            "run_seed": self.run_seed,
            "backend": self.backend,
            **{key: value if smc else None for key, value in (
                ("particles", self.particles), ("smc_chunk", self.smc_chunk), ("smc_ess", self.smc_ess),
                ("smc_bridge", self.smc_bridge))},
        }  # fmt: skip


def check_particles_fit(particles: int, batch_size: int, source: str) -> None:
    """One SMC round decodes all N particles of a chain together: N must fit in one batch."""
    if particles > batch_size:
        raise UserError(
            f"--particles {particles} needs {particles} chains decoded together, but {source} is {batch_size}.",
            f"Use --particles {batch_size} or less, or --batch-size {particles} or more.",
        )


def sample_argv(config: SampleConfig, omit: tuple[str, ...] = ()) -> list[str]:
    """The options of ``dps sample`` that parse back to ``config`` (``command`` aside).

    Every setting is written out, so the argv means the same under another version's defaults
    and inside a Slurm array (where a missing ``--shard`` would be read from the environment).
    ``omit`` drops options by name (e.g. ``("--shard", "--seeds")`` for a script that appends
    its own). Every Slurm script runs `dps sample` with this argv.
    """
    values: dict[str, str | None] = {
        "--bench": config.bench, "--model": config.model, "--method": config.method,
        "--k": str(config.k), "--alpha": repr(config.alpha),
        "--temperature": None if config.temperature is None else repr(config.temperature),
        "--max-new-tokens": str(config.max_new_tokens), "--blocks": str(config.blocks),
        "--after-eos": config.after_eos,
        "--checkpoints": ",".join(str(block) for block in config.checkpoints),
        "--hidden-layer": "none" if config.hidden_layer is None else str(config.hidden_layer),
        "--controller": config.controller,
        "--tau": None if config.tau is None else repr(config.tau),
        "--registry": None if config.registry is None else str(config.registry),
        "--seeds": format_seeds(config.seeds),
        "--limit": None if config.limit is None else str(config.limit),
        "--offset": str(config.offset), "--shard": f"{config.shard[0]}/{config.shard[1]}",
        "--data": None if config.data is None else str(config.data), "--out": str(config.out),
        "--device": config.device, "--dtype": config.dtype,
        "--batch-size": None if config.batch_size is None else str(config.batch_size),
        "--backend": config.backend, "--flush-every": str(config.flush_every), "--run-seed": str(config.run_seed),
        "--particles": str(config.particles), "--smc-chunk": str(config.smc_chunk),
        "--smc-ess": repr(config.smc_ess), "--smc-bridge": str(config.smc_bridge),
    }  # fmt: skip
    unknown = set(omit) - set(values)
    if unknown:
        raise ValueError(f"not options of dps sample: {sorted(unknown)}")
    return [part for name, value in values.items() if value is not None and name not in omit
            for part in (name, value)]  # fmt: skip


def _check_at_most(flag: str, value: int, bound: int) -> None:
    """Refuse an integer option above ``bound`` (a column, a tensor or the run's length limits it)."""
    if value > bound:
        raise UserError(f"{flag} {value} is too large: the limit is {bound}.")


def format_blocks(blocks: tuple[int, ...]) -> str:
    """``(2, 4, 8)`` -> ``"2,4,8"``, as --checkpoints is written."""
    return ",".join(str(block) for block in blocks)


def format_seeds(seeds: tuple[int, ...]) -> str:
    """The inverse of `parse_seeds`: ``(0, 1, 2, 3, 7)`` -> ``"0-3,7"`` (order kept)."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-7"``, ``"0,3,5"`` or ``"4"`` (ranges inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise UserError(f"--seeds {text!r} is not a list of seeds.", "Use e.g. 0-7 or 0,2,5.")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise UserError(f"--seeds range {part!r} is empty.", "Write the smaller seed first, e.g. 0-7.")
        if hi > MAX_SEED:
            raise UserError(f"--seeds {part!r}: seed {hi} is too large.", f"Seeds go up to {MAX_SEED}.")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise UserError(f"--seeds {text!r} selects more than {MAX_SEEDS} seeds per question.",
                            "Pick a smaller range, e.g. 0-7.")
        seeds.extend(range(lo, hi + 1))
    return tuple(dict.fromkeys(seeds))


def parse_shard(text: str | None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """``"i/n"``; without it, a Slurm array task picks its shard from SLURM_ARRAY_TASK_*."""
    env = os.environ if environ is None else environ
    if text is None:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            first = _env_int(env, "SLURM_ARRAY_TASK_MIN", "0")
            index, count = _env_int(env, "SLURM_ARRAY_TASK_ID") - first, _env_int(env, "SLURM_ARRAY_TASK_COUNT")
            if count < 1 or not 0 <= index < count:
                raise UserError(
                    f"The Slurm array variables give shard {index}/{count} (SLURM_ARRAY_TASK_ID minus "
                    "SLURM_ARRAY_TASK_MIN must lie in [0, SLURM_ARRAY_TASK_COUNT)).",
                    "Use a contiguous array such as --array=0-3, or pass --shard i/n.",
                )
            return index, count
        return 0, 1
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise UserError(f"--shard {text!r} is not of the form i/n.", "For example --shard 0/4.")
    return int(match.group(1)), int(match.group(2))


def _env_int(env: Any, name: str, default: str | None = None) -> int:
    """An integer environment variable; a bad value is a UserError naming it."""
    value = env.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not an integer.", "Fix the variable or pass --shard i/n.") from None


def parse_checkpoints(text: str) -> tuple[int, ...]:
    """Comma-separated block indices, e.g. ``"2,4,8"``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--checkpoints {text!r} must be comma-separated block numbers, e.g. 2,4,8.") from None
    if any(v < 1 for v in values):
        raise UserError(f"--checkpoints {text!r}: block numbers start at 1.")
    return values


def parse_hidden_layer(text: str) -> int | None:
    """An integer layer index, or ``none`` to skip hidden states."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--hidden-layer {text!r} must be a layer number or 'none'.") from None
