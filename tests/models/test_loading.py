"""Model resolution without loading: aliases, directories, GGUF files and hub ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from dps_cli.errors import UserError
from dps_cli.models.loading import load_model, pick_device, pick_dtype, resolve_model


def test_resolve_kinds(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert resolve_model("smollm2-135m").kind == "embedded"
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)).kind == "gguf"
    assert resolve_model(str(tiny_model_dir)).kind == "directory"
    assert resolve_model("Qwen/Qwen2.5-Math-7B").kind == "hub"


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_device_and_dtype_choices() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_dtype("cpu") == "float32" and pick_dtype("cuda") == "bfloat16"
    with pytest.raises(UserError, match="Unknown device 'tpu'"):
        pick_device("tpu")
    with pytest.raises(UserError, match="Unknown dtype 'int3'"):
        pick_dtype("cpu", "int3")


def test_load_directory_reports_model_facts(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), device="cpu")
    assert (loaded.num_layers, loaded.hidden_size) == (2, 16)
    assert loaded.eos_token_ids == (loaded.tokenizer.eos_token_id,)
    assert loaded.describe()["source"] == "directory"


def test_unreachable_hub_id_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="Could not load model 'nobody/no-such-model'"):
        load_model("nobody/no-such-model", device="cpu")
