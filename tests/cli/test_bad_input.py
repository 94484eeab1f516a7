"""Bad input to any command: one sentence on stderr, exit code 2, no traceback.

Paths that exist but are the wrong kind, environment variables with bad values, files with the
right name but the wrong content, values out of range, and a disk that fills up mid-run.
"""

from __future__ import annotations

import errno
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from tests.controllers.planted import planted_table
from tests.factories import sample_row, write_run

RUNNER = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None, one_line: bool = True):  # type: ignore[no-untyped-def]
    result = RUNNER.invoke(app, list(args), env={"COLUMNS": "400", **(env or {})})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 or not one_line, result.stderr  # the progress bar may stand above it
    assert errors[-1].startswith("error: ")
    return result


def sample_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["sample", "--bench", "arith", "--out", str(tmp_path / "run"), *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "inf"], "--alpha inf must be a finite number."),
        (["--alpha", "nan"], "--alpha nan must be a finite number."),
        (["--method", "temperature", "--alpha", "inf"], "--alpha inf must be a finite number."),
        (["--method", "temperature", "--temperature", "nan"], "--temperature nan must be a finite number."),
        (["--method", "temperature", "--temperature", "inf"], "--temperature inf must be a finite number."),
        (["--seeds", "0-99999999999"], "--seeds '0-99999999999': seed 99999999999 is too large."),
        (["--seeds", "0-200000"], "--seeds '0-200000' selects more than 100000 seeds per question."),
        (["--offset", "100000"], "--offset 100000 is beyond the data: arith has "),
    ],
)
def test_sample_values_out_of_range(tmp_path: Path, extra: list[str], message: str) -> None:
    assert message in invoke(*sample_args(tmp_path, *extra)).stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--particles", "0"], "--particles 0 must be at least 1."),
        (["--smc-chunk", "0"], "--smc-chunk 0 must be at least 1."),
        (["--smc-ess", "0"], "--smc-ess 0.0 must lie in (0, 1]: resample when ESS < rho * N."),
        (["--smc-ess", "1.5"], "--smc-ess 1.5 must lie in (0, 1]: resample when ESS < rho * N."),
        (["--smc-ess", "nan"], "--smc-ess nan must lie in (0, 1]: resample when ESS < rho * N."),
        (["--smc-bridge", "-1"], "--smc-bridge -1 must be >= 0 (0: no bridging)."),
        (["--particles", "9", "--batch-size", "8"],
         "--particles 9 needs 9 chains decoded together, but --batch-size is 8."),
        (["--particles", "17", "--device", "cpu"],
         "--particles 17 needs 17 chains decoded together, but the default --batch-size on cpu is 16."),
        (["--controller", "my-gbdt"], "--controller sets k for MH (--method dps); --method smc takes none."),
    ],
)
def test_sample_smc_values_out_of_range(tmp_path: Path, extra: list[str], message: str) -> None:
    assert message in invoke(*sample_args(tmp_path, "--method", "smc", *extra)).stderr
    assert not (tmp_path / "run").exists()


def test_sample_out_naming_a_regular_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.write_text("not a directory")
    assert f"{out} is a file, not a run directory." in invoke(*sample_args(tmp_path)).stderr
    assert out.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLURM_ARRAY_TASK_ID": "abc", "SLURM_ARRAY_TASK_COUNT": "2"}, "SLURM_ARRAY_TASK_ID='abc' is not an integer."),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "two"}, "SLURM_ARRAY_TASK_COUNT='two' is not an integer."),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "x"},
         "SLURM_ARRAY_TASK_MIN='x' is not an integer."),
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2"}, "The Slurm array variables give shard 5/2"),
    ],
)
def test_sample_with_bad_slurm_variables(tmp_path: Path, env: dict[str, str], message: str) -> None:
    assert message in invoke(*sample_args(tmp_path), env=env).stderr


def test_sample_model_naming_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert f"Model path {notes} is a file, not a model." in invoke(*sample_args(tmp_path, "--model", str(notes))).stderr
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    assert f"{fake} is not a GGUF file" in invoke(*sample_args(tmp_path, "--model", str(fake))).stderr
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    assert f"GGUF file {folder} is not a file." in invoke(*sample_args(tmp_path, "--model", str(folder))).stderr


def test_sample_when_the_disk_fills_up(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dps_cli.runs import store as store_module

    real = store_module._write_parquet
    calls = []

    def fill_the_disk(table, path):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 1:
            return real(table, path)
        path.write_bytes(b"PAR1 half a part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_parquet", fill_the_disk)
    args = sample_args(tmp_path, "--model", str(tiny_model_dir), "--method", "greedy", "--max-new-tokens", "8",
                       "--limit", "4", "--hidden-layer", "none", "--flush-every", "2")
    stderr = invoke(*args, one_line=False).stderr
    samples = tmp_path / "run" / "samples"
    assert (f"Could not write 2 finished samples to {samples} (2 samples of this session are stored there in "
            "complete parts): no space left on the device.") in stderr
    assert len(calls) == 2
    assert [p.name.startswith("part-00000-") for p in samples.iterdir()] == [True]  # no temporary file left
    assert pl.read_parquet(next(samples.iterdir())).height == 2


def test_train_controller_on_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("these are not the rows you are looking for")
    stderr = invoke("train-controller", "gbdt", "--data", str(garbage), "--registry", str(tmp_path / "reg")).stderr
    assert f"Training table {garbage} is not a readable Parquet file" in stderr
    stderr = invoke("train-controller", "gbdt", "--data", str(tmp_path), "--registry", str(tmp_path / "reg")).stderr
    assert f"Training table {tmp_path} is not a file." in stderr


def test_train_controller_on_a_table_without_usable_features(tmp_path: Path) -> None:
    from dps_cli.controllers.table import write_table

    frame = planted_table("entropy", questions=10)
    floats = ["mcmc_perplexity", "mcmc_entropy", "mcmc_self_confidence", "acceptance_ratio", "question_time_sec"]
    frame = frame.with_columns(pl.lit(float("nan")).cast(frame.schema[name]).alias(name) for name in floats)
    table = tmp_path / "nan.parquet"
    write_table(frame, table)
    stderr = invoke("train-controller", "gbdt", "--data", str(table), "--registry", str(tmp_path / "reg")).stderr
    assert "The training table has no usable features" in stderr
    assert f"({', '.join(floats)} never finite)" in stderr
    assert not (tmp_path / "reg").exists()


def test_controllers_with_a_registry_or_home_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert f"Controller registry {file} is a file" in invoke("controllers", "list", "--registry", str(file)).stderr
    assert f"DPS_HOME={file} is a file, not a directory." in invoke("controllers", "list", env={"DPS_HOME": str(file)}).stderr
    data = ["sample", "--bench", "math500", "--out", str(tmp_path / "run")]
    assert f"DPS_DATA_DIR={file} is a file, not a directory." in invoke(*data, env={"DPS_DATA_DIR": str(file)}).stderr


@pytest.mark.parametrize("command", ["evaluate", "passk"])
def test_reports_on_a_run_that_is_a_file_or_has_a_broken_manifest(tmp_path: Path, command: str) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert f"{file} is a file, not a run directory." in invoke(command, str(file)).stderr
    run = write_run(tmp_path / "run", [sample_row()])
    (run / "manifest.json").write_text('{"config": ["power"]}')
    assert "is not a dps manifest (its config is not an object)" in invoke(command, str(run)).stderr
    (run / "manifest.json").write_text('{"config": {"task": "arith", "data": 7}}')
    assert "is not a dps manifest (config.data is 7)" in invoke(command, str(run)).stderr
    (run / "manifest.json").unlink()
    (run / "manifest.json").mkdir()
    assert f"No run at {run}: manifest.json is not a file." in invoke(command, str(run)).stderr


def test_passk_plot_into_a_directory_or_under_a_file(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [sample_row()])
    assert f"--plot {tmp_path} is a directory." in invoke("passk", str(run), "--plot", str(tmp_path)).stderr
    under = tmp_path / "run" / "manifest.json" / "p.png"
    assert "which is a file." in invoke("passk", str(run), "--plot", str(under)).stderr


def test_evaluate_names_a_part_with_a_damaged_page(tmp_path: Path) -> None:
    from tests.runs.test_locking import _damage_a_data_page

    run = write_run(tmp_path / "run", [sample_row(seed=0), sample_row(seed=1)], rows_per_part=1)
    part = sorted(run.glob("samples/part-*.parquet"))[0]
    _damage_a_data_page(part)
    stderr = invoke("evaluate", str(run)).stderr
    assert f"error: {part} is corrupt (" in stderr and "moves a corrupt part aside" in stderr


def test_collect_into_a_directory_or_from_a_file(tmp_path: Path) -> None:
    from tests.controllers.fixed_k_runs import ladder_runs

    runs = [str(run) for run in ladder_runs(tmp_path)]
    assert f"--out {tmp_path} is a directory." in invoke("collect", *runs, "--out", str(tmp_path)).stderr
    file = tmp_path / "file"
    file.write_text("x")
    under = file / "t.parquet"
    assert f"--out {under} lies under {file}, which is a file." in invoke("collect", *runs, "--out", str(under)).stderr
    assert f"{file} is a file, not a run directory." in invoke("collect", str(file), "--out", str(tmp_path / "t.parquet")).stderr


def test_a_controller_whose_model_file_is_damaged(tmp_path: Path) -> None:
    from tests.controllers.planted import write_planted

    table = write_planted(tmp_path / "t.parquet", "entropy", questions=12)
    registry = ["--registry", str(tmp_path / "reg")]
    trained = RUNNER.invoke(app, ["train-controller", "gbdt", "--data", str(table), "--name", "c", *registry])
    assert trained.exit_code == 0, trained.output
    model_file = next(p for p in (tmp_path / "reg" / "c").iterdir() if p.name != "card.json")
    model_file.write_bytes(b"not a model")
    stderr = invoke(*sample_args(tmp_path, "--method", "dps", "--controller", "c", *registry)).stderr
    assert f"Controller 'c' in {tmp_path / 'reg' / 'c'} cannot be loaded (" in stderr


def test_a_model_directory_with_a_broken_config(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")
    stderr = invoke(*sample_args(tmp_path, "--model", str(model)), one_line=False).stderr
    assert f"error: Could not load model '{model}'" in stderr
