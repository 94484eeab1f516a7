"""The controller registry on disk: train, list, load in a fresh process, check, remove."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dps_cli.controllers.artifacts import (
    check_compatible,
    list_controllers,
    load_controller,
    remove_controller,
)
from dps_cli.controllers.base import Controller
from dps_cli.controllers.fitting import TrainSettings
from dps_cli.controllers.table import checkpoint_features, read_table
from dps_cli.errors import UserError
from dps_cli.pipeline.train import file_sha256, train_controller
from tests.controllers.planted import write_planted

FAST = TrainSettings(mlp_epochs=20, patience=3, gbdt_iterations=60)

RELOAD_SCRIPT = """
import json, sys
from pathlib import Path
from dps_cli.controllers.artifacts import load_controller
from dps_cli.controllers.table import checkpoint_features, read_table
batch = checkpoint_features(read_table(Path(sys.argv[1])).head(40))
out = {name: load_controller(name, Path(sys.argv[2])).predict_p_enough(batch).tolist()
       for name in sys.argv[3:]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A registry with a gbdt and an mlp-hq controller, and their in-process predictions."""
    root = tmp_path_factory.mktemp("controllers")
    table = write_planted(root / "table.parquet", "entropy+hidden", questions=40)
    registry = root / "registry"
    batch = checkpoint_features(read_table(table).head(40))
    predictions = {}
    for kind, name in (("gbdt", "g"), ("mlp-hq", "hq")):
        train_controller(kind, table, name, registry_dir=registry, seed=1, settings=FAST)
        predictions[name] = load_controller(name, registry).predict_p_enough(batch)
    return table, registry, predictions


def test_cards_are_listed_with_what_they_were_trained_on(trained) -> None:  # type: ignore[no-untyped-def]
    table, registry, _ = trained
    cards = {card.name: card for card in list_controllers(registry)}
    assert sorted(cards) == ["g", "hq"]
    hq, g = cards["hq"], cards["g"]
    assert (hq.kind, hq.hidden_layer, hq.hidden_size, hq.question_embedding_size) == (
        "mlp-hq",
        1,
        16,
        16,
    )
    assert (g.hidden_layer, g.hidden_size, g.question_embedding_size) == (None, None, None)
    assert hq.feature_names[-2:] == ("hidden[0:16]", "question_embedding[0:16]")
    assert hq.training_data_sha256 == file_sha256(table)
    assert hq.training_runs == ("run-k2", "run-k4", "run-k6", "run-k8")
    assert hq.seed == 1 and hq.model_id == "tiny-test-model" and hq.card_schema_version == "1.1"
    assert hq.recommended_tau in {p.tau for p in hq.tau_sweep.points}
    assert sorted(p.name for p in (registry / "hq").iterdir()) == ["card.json", "model.pt"]
    assert sorted(p.name for p in (registry / "g").iterdir()) == ["card.json", "model.cbm"]
    card = json.loads((registry / "hq" / "card.json").read_text())
    assert card["recommended_tau"] == hq.recommended_tau and "time_model" in card


def test_a_new_process_loads_the_same_predictions(trained) -> None:  # type: ignore[no-untyped-def]
    table, registry, predictions = trained
    done = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(table), str(registry), "g", "hq"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    reloaded = json.loads(done.stdout)
    for name, expected in predictions.items():
        np.testing.assert_array_equal(np.array(reloaded[name]), expected)
    assert 0.0 <= expected.min() and expected.max() <= 1.0


def test_check_compatible_refuses_another_width_in_plain_words(trained) -> None:  # type: ignore[no-untyped-def]
    _, registry, _ = trained
    hq: Controller = load_controller("hq", registry)
    check_compatible(hq, model_id="tiny-test-model", hidden_layer=1, hidden_size=16)
    with pytest.raises(UserError) as err:
        check_compatible(hq, model_id="other/model", hidden_layer=1, hidden_size=32)
    assert err.value.message == (
        "Controller 'hq' was trained on hidden states of width 16 from layer 1, "
        "but model other/model has width 32."
    )
    with pytest.raises(UserError) as err:
        check_compatible(hq, model_id="tiny-test-model", hidden_layer=None, hidden_size=16)
    assert err.value.message == (
        "Controller 'hq' needs hidden states of layer 1, but the run has --hidden-layer none."
    )
    with pytest.raises(
        UserError, match="trained on hidden states of layer 1, but the run records layer 5"
    ):
        check_compatible(hq, model_id="tiny-test-model", hidden_layer=5, hidden_size=16)


def test_check_compatible_only_warns_about_another_model(trained, caplog) -> None:  # type: ignore[no-untyped-def]
    _, registry, _ = trained
    g = load_controller("g", registry)
    with caplog.at_level(logging.WARNING):
        check_compatible(g, model_id="other/model", hidden_layer=None, hidden_size=None)
    assert "trained on model tiny-test-model, not other/model" in caplog.text


def test_name_collision_needs_force(trained) -> None:  # type: ignore[no-untyped-def]
    table, registry, _ = trained
    with pytest.raises(UserError, match="A controller named 'g' already exists"):
        train_controller("gbdt", table, "g", registry_dir=registry, settings=FAST)


def test_unknown_name_suggests_and_lists(trained) -> None:  # type: ignore[no-untyped-def]
    _, registry, _ = trained
    with pytest.raises(UserError) as err:
        load_controller("hqq", registry)
    assert err.value.message == f"Unknown controller 'hqq' in {registry}."
    assert err.value.hint == "Did you mean 'hq'? Available: g, hq."


def test_force_replaces_and_remove_deletes(tmp_path: Path) -> None:
    table = write_planted(tmp_path / "t.parquet", "entropy", questions=20)
    registry = tmp_path / "reg"
    first = train_controller("gbdt", table, "c", registry_dir=registry, seed=0, settings=FAST)
    second = train_controller(
        "gbdt", table, "c", registry_dir=registry, seed=5, force=True, settings=FAST
    )
    assert first.path == second.path
    assert [c.seed for c in list_controllers(registry)] == [5]
    assert [p.name for p in registry.iterdir()] == ["c"]  # no staging debris
    assert remove_controller("c", registry) == registry / "c"
    assert list_controllers(registry) == []
    with pytest.raises(UserError, match="holds no controllers"):
        remove_controller("c", registry)


def test_default_registry_follows_dps_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPS_HOME", str(tmp_path / "home"))
    table = write_planted(tmp_path / "t.parquet", "entropy", questions=10)
    report = train_controller("gbdt", table, settings=FAST)
    assert report.path == tmp_path / "home" / "controllers" / "gbdt"
    assert [c.name for c in list_controllers()] == ["gbdt"]


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Controller name '../x' is not allowed"):
        train_controller("gbdt", tmp_path / "missing.parquet", "../x", registry_dir=tmp_path)
