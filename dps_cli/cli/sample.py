"""`dps sample`: run power, DPS, Power-SMC, temperature or greedy sampling into a run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dps_cli.cli.options import (
    METHOD_PANEL,
    RUN_PANEL,
    BackendOption,
    BatchSizeOption,
    DeviceOption,
    ModelOption,
    RegistryOption,
    SbatchOption,
    config_defaults,
)
from dps_cli.config import (
    MAX_K,
    MAX_NEW_TOKENS,
    MAX_SEED,
    METHODS,
    TEMPERATURE_RANGE,
    SampleConfig,
    format_seeds,
)

DEFAULTS = config_defaults(SampleConfig)  # every default below is SampleConfig's


def sample(
    bench: Annotated[str, typer.Option(help="Task: math500, gpqa, humaneval, alpacaeval or arith.")],
    model: ModelOption = DEFAULTS["model"],
    method: Annotated[str, typer.Option(help=f"{' | '.join(METHODS)}.", rich_help_panel=METHOD_PANEL)] = DEFAULTS["method"],
    k: Annotated[int, typer.Option(help=f"MH proposals per block (power; 1 to {MAX_K}).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["k"],
    alpha: Annotated[float, typer.Option(help=f"Power of the target p^alpha; proposals use temperature 1/alpha (alpha from {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["alpha"],
    temperature: Annotated[Optional[float], typer.Option(help=f"Temperature for --method temperature (default 1/alpha; {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}).", rich_help_panel=METHOD_PANEL)] = None,
    max_new_tokens: Annotated[int, typer.Option(help=f"Tokens per completion (divisible by --blocks; at most {MAX_NEW_TOKENS}).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["max_new_tokens"],
    blocks: Annotated[int, typer.Option(help="Number of MH blocks.", rich_help_panel=METHOD_PANEL)] = DEFAULTS["blocks"],
    after_eos: Annotated[str, typer.Option(help="After the block in which a chain ends at EOS: stop (the published schedule; biased at any k) | continue (MH at every later block's length; exact, k proposals per later block) | jump (one MH block at the final length; exact, k proposals in all).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["after_eos"],
    checkpoints: Annotated[str, typer.Option(help="Blocks after which DPS features are recorded (and DPS decides); those beyond --blocks are dropped, and --method dps needs at least one within.", rich_help_panel=METHOD_PANEL)] = ",".join(map(str, DEFAULTS["checkpoints"])),
    hidden_layer: Annotated[str, typer.Option(help="Layer whose hidden states are recorded (0 = embeddings), or 'none'.", rich_help_panel=METHOD_PANEL)] = str(DEFAULTS["hidden_layer"]),
    controller: Annotated[Optional[str], typer.Option(help="Trained controller name (--method dps).", rich_help_panel=METHOD_PANEL)] = None,
    particles: Annotated[int, typer.Option(help="Power-SMC particles N (--method smc); all N decode together, so N <= --batch-size.", rich_help_panel=METHOD_PANEL)] = DEFAULTS["particles"],
    smc_chunk: Annotated[int, typer.Option(help="Tokens each particle samples per SMC round (--method smc).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["smc_chunk"],
    smc_ess: Annotated[float, typer.Option(help="Resample when ESS < rho * N; rho in (0, 1] (--method smc).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["smc_ess"],
    smc_bridge: Annotated[int, typer.Option(help="Tokens over which the exponent rises from 1 to alpha; 0 = off (--method smc).", rich_help_panel=METHOD_PANEL)] = DEFAULTS["smc_bridge"],
    tau: Annotated[Optional[float], typer.Option(help="Escalate k when 1 - p_enough > tau (default: the controller's recommended tau, else 0.5).", rich_help_panel=METHOD_PANEL)] = None,
    registry: RegistryOption = None,
    seeds: Annotated[str, typer.Option(help="Sample seeds per question, e.g. 0-7 or 0,3.", rich_help_panel=RUN_PANEL)] = format_seeds(DEFAULTS["seeds"]),
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N questions.", rich_help_panel=RUN_PANEL)] = None,
    offset: Annotated[int, typer.Option(help="Skip the first N questions (with --limit: a contiguous split).", rich_help_panel=RUN_PANEL)] = DEFAULTS["offset"],
    shard: Annotated[Optional[str], typer.Option(help="i/n: every n-th question from the i-th (default: from SLURM_ARRAY_TASK_ID, else all).", rich_help_panel=RUN_PANEL)] = None,
    data: Annotated[Optional[Path], typer.Option(help="Local data file instead of DPS_DATA_DIR or the hub.", rich_help_panel=RUN_PANEL)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<bench>-<method>).", rich_help_panel=RUN_PANEL)] = None,
    device: DeviceOption = DEFAULTS["device"],
    dtype: Annotated[str, typer.Option(help="auto (bfloat16 on CUDA, float32 elsewhere) | float32 | bfloat16 | float16.", rich_help_panel=RUN_PANEL)] = DEFAULTS["dtype"],
    batch_size: BatchSizeOption = None,
    backend: BackendOption = DEFAULTS["backend"],
    flush_every: Annotated[int, typer.Option(help="Write a Parquet part once N finished samples wait, or 10 s after a sample finishes if sooner. SIGTERM and Ctrl-C write every finished sample; a SIGKILL or crash loses at most the samples in flight and those finished in the last 10 s (at most N).", rich_help_panel=RUN_PANEL)] = DEFAULTS["flush_every"],
    run_seed: Annotated[int, typer.Option(help=f"Seed of the run (0 to {MAX_SEED}); with question id and sample seed it fixes every chain.", rich_help_panel=RUN_PANEL)] = DEFAULTS["run_seed"],
    slurm_array: Annotated[Optional[int], typer.Option(help="Print the sbatch script for an N-task Slurm array running this command, and exit.", rich_help_panel=RUN_PANEL)] = None,
    sbatch: SbatchOption = None,
) -> None:
    """Sample completions and store them as a resumable run.

    Examples:

      dps sample --bench arith --method power --k 4 --max-new-tokens 96 --blocks 4 --seeds 0-1 --limit 8

      dps sample --bench math500 --model Qwen/Qwen2.5-Math-7B --seeds 0-7 --out runs/qwen-k8

      dps sample --bench math500 --method dps --controller my-gbdt --tau 0.5

      dps sample --bench arith --method smc --particles 8 --max-new-tokens 96 --limit 8

      dps sample --bench math500 --seeds 0-7 --slurm-array 8 --sbatch partition=gpu > array.sbatch

    Rerunning the same command resumes: (question, seed) pairs already stored are skipped.
    SIGTERM (how Slurm stops a job) or Ctrl-C writes every finished sample, prints one line and
    exits 143 or 130. Only one process may write a shard of a run directory at a time.
    """
    from dps_cli.config import (
        parse_checkpoints,
        parse_hidden_layer,
        parse_seeds,
        parse_shard,
    )

    config = SampleConfig(
        bench=bench, out=out if out is not None else Path("runs") / f"{bench}-{method}", model=model,
        method=method, k=k, alpha=alpha, temperature=temperature, max_new_tokens=max_new_tokens,
        blocks=blocks, after_eos=after_eos, checkpoints=parse_checkpoints(checkpoints), hidden_layer=parse_hidden_layer(hidden_layer),
        controller=controller, tau=tau, registry=registry, seeds=parse_seeds(seeds), limit=limit, offset=offset,
        shard=parse_shard(shard), data=data, device=device, dtype=dtype, batch_size=batch_size, backend=backend,
        run_seed=run_seed, command=" ".join(["dps", *sys.argv[1:]]),
        flush_every=flush_every, particles=particles, smc_chunk=smc_chunk, smc_ess=smc_ess, smc_bridge=smc_bridge,
    )
    if slurm_array is not None:
        from dps_cli.pipeline.slurm import parse_sbatch, resources_for_device, sample_array_script

        resources = {**resources_for_device(device), **parse_sbatch(sbatch or [])}
        typer.echo(sample_array_script(config, slurm_array, resources), nl=False)
        typer.echo("Submit it with sbatch. If a task fails or is cancelled, submit the same script "
                   "again: stored samples are skipped.", err=True)  # fmt: skip
        return
    from dps_cli.pipeline.stopping import stop_before_start

    with stop_before_start():  # before torch loads: a stop in the first seconds still says so
        from dps_cli.cli.progress import sample_progress
        from dps_cli.pipeline.sample import sample as run_sample

        with sample_progress() as on_progress:
            summary = run_sample(config, on_progress)
    typer.echo(f"{summary.run_dir}: wrote {summary.written} samples, {summary.skipped} already stored "
               f"({summary.total} in this selection) in {summary.wall_time_s:.1f}s")
