"""`dps sample`: run power, DPS, temperature or greedy sampling into a run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

MODEL_PANEL = "Model"
METHOD_PANEL = "Method"
RUN_PANEL = "Run"


def sample(
    bench: Annotated[str, typer.Option(help="Task: math500, gpqa, humaneval, alpacaeval or arith.")],
    model: Annotated[str, typer.Option(help="Hugging Face id, local directory, .gguf file, or the embedded 'smollm2-135m'.", rich_help_panel=MODEL_PANEL)] = "smollm2-135m",
    method: Annotated[str, typer.Option(help="power | dps | temperature | greedy.", rich_help_panel=METHOD_PANEL)] = "power",
    k: Annotated[int, typer.Option(help="MH proposals per block (power).", rich_help_panel=METHOD_PANEL)] = 8,
    alpha: Annotated[float, typer.Option(help="Power of the target p^alpha; proposals use temperature 1/alpha.", rich_help_panel=METHOD_PANEL)] = 4.0,
    temperature: Annotated[Optional[float], typer.Option(help="Temperature for --method temperature (default 1/alpha).", rich_help_panel=METHOD_PANEL)] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per completion (divisible by --blocks).", rich_help_panel=METHOD_PANEL)] = 3072,
    blocks: Annotated[int, typer.Option(help="Number of MH blocks.", rich_help_panel=METHOD_PANEL)] = 16,
    after_eos: Annotated[str, typer.Option(help="After the block in which a chain ends at EOS: stop (the published algorithm, slightly biased) | continue (MH goes on at the later blocks' lengths; exact).", rich_help_panel=METHOD_PANEL)] = "stop",
    checkpoints: Annotated[str, typer.Option(help="Blocks after which DPS features are recorded (and DPS decides).", rich_help_panel=METHOD_PANEL)] = "2,4,8",
    hidden_layer: Annotated[str, typer.Option(help="Layer whose hidden states are recorded (0 = embeddings), or 'none'.", rich_help_panel=METHOD_PANEL)] = "11",
    controller: Annotated[Optional[str], typer.Option(help="Trained controller name (--method dps).", rich_help_panel=METHOD_PANEL)] = None,
    tau: Annotated[Optional[float], typer.Option(help="Escalate k when 1 - p_enough > tau (default: the controller's recommended tau, else 0.5).", rich_help_panel=METHOD_PANEL)] = None,
    registry: Annotated[Optional[Path], typer.Option(help="Controller registry directory (default: DPS_HOME or the user data dir).", rich_help_panel=METHOD_PANEL)] = None,
    seeds: Annotated[str, typer.Option(help="Sample seeds per question, e.g. 0-7 or 0,3.", rich_help_panel=RUN_PANEL)] = "0",
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N questions.", rich_help_panel=RUN_PANEL)] = None,
    offset: Annotated[int, typer.Option(help="Skip the first N questions (with --limit: a contiguous split).", rich_help_panel=RUN_PANEL)] = 0,
    shard: Annotated[Optional[str], typer.Option(help="i/n: every n-th question from the i-th (default: from SLURM_ARRAY_TASK_ID, else all).", rich_help_panel=RUN_PANEL)] = None,
    data: Annotated[Optional[Path], typer.Option(help="Local data file instead of DPS_DATA_DIR or the hub.", rich_help_panel=RUN_PANEL)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<bench>-<method>).", rich_help_panel=RUN_PANEL)] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N] | mps.", rich_help_panel=RUN_PANEL)] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bfloat16 on CUDA, float32 elsewhere) | float32 | bfloat16 | float16.", rich_help_panel=RUN_PANEL)] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(help="Chains decoded together (default: 16 on CPU, 64 on CUDA).", rich_help_panel=RUN_PANEL)] = None,
    backend: Annotated[str, typer.Option(help="Sampling backend: auto (vllm when installed and CUDA is present, else hf) | hf | vllm.", rich_help_panel=RUN_PANEL)] = "auto",
    flush_every: Annotated[int, typer.Option(help="Write a Parquet part once N finished samples wait, or 10 s after a sample finishes if sooner. SIGTERM and Ctrl-C write every finished sample; a SIGKILL or crash loses at most the samples in flight and those finished in the last 10 s (at most N).", rich_help_panel=RUN_PANEL)] = 16,
    run_seed: Annotated[int, typer.Option(help="Seed of the run; with question id and sample seed it fixes every chain.", rich_help_panel=RUN_PANEL)] = 0,
    slurm_array: Annotated[Optional[int], typer.Option(help="Print the sbatch script for an N-task Slurm array running this command, and exit.", rich_help_panel=RUN_PANEL)] = None,
    sbatch: Annotated[Optional[list[str]], typer.Option(help="With --slurm-array: an #SBATCH option KEY=VALUE, e.g. partition=cpu (repeatable; KEY= drops a default such as gres=).", rich_help_panel=RUN_PANEL)] = None,
) -> None:
    """Sample completions and store them as a resumable run.

    Examples:

      dps sample --bench arith --method power --k 4 --max-new-tokens 96 --blocks 4 --seeds 0-1 --limit 8

      dps sample --bench math500 --model Qwen/Qwen2.5-Math-7B --seeds 0-7 --out runs/qwen-k8

      dps sample --bench math500 --method dps --controller my-gbdt --tau 0.5

      dps sample --bench math500 --seeds 0-7 --slurm-array 8 --sbatch partition=gpu > array.sbatch

    Rerunning the same command resumes: (question, seed) pairs already stored are skipped.
    SIGTERM (how Slurm stops a job) or Ctrl-C writes every finished sample, prints one line and
    exits 143 or 130. Only one process may write a shard of a run directory at a time.
    """
    from dps_cli.config import (
        SampleConfig,
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
        flush_every=flush_every,
    )
    if slurm_array is not None:
        from dps_cli.pipeline.slurm import parse_sbatch, resources_for_device, sample_array_script

        resources = {**resources_for_device(device), **parse_sbatch(sbatch or [])}
        typer.echo(sample_array_script(config, slurm_array, resources), nl=False)
        typer.echo("Submit it with sbatch. If a task fails or is cancelled, submit the same script "
                   "again: stored samples are skipped.", err=True)  # fmt: skip
        return
    from dps_cli.cli.progress import sample_progress
    from dps_cli.pipeline.sample import sample as run_sample

    with sample_progress() as on_progress:
        summary = run_sample(config, on_progress)
    typer.echo(f"{summary.run_dir}: wrote {summary.written} samples, {summary.skipped} already stored "
               f"({summary.total} in this selection) in {summary.wall_time_s:.1f}s")
