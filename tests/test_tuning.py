"""kgcm tune: the same search budget for every method, chosen on tuning worlds by factual
error, written as a config the benchmark evaluates."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import fast_params
from kgcm.config import from_dict
from kgcm.errors import ConfigError
from kgcm.experiments.benchmark import BenchmarkConfig, EstimatorSpec
from kgcm.experiments.tuning import candidates, run_tuning, with_setting

WORLD = {"name": "tiny", "kind": "arctic", "params": {"ny": 4, "nx": 4, "days": 60}}


def _config(tmp_path, estimators, **extra):
    return from_dict(BenchmarkConfig, {
        "name": "tune-test", "datasets": [WORLD], "estimators": estimators, "seeds": [7],
        "tuning_seeds": [3, 4], "n_jobs": 1, "out": str(tmp_path / "bench"), **extra,
    })  # fmt: skip


def test_candidates_cover_the_grid_and_reach_nested_tables() -> None:
    spec = EstimatorSpec(
        "crn",
        params={"hidden": 8, "training": {"max_epochs": 3}},
        search={"hidden": [4, 8], "training.learning_rate": [1e-3, 1e-2]},
    )
    got = candidates(spec)
    assert len(got) == 4
    assert got[0] == {"hidden": 4, "training": {"max_epochs": 3, "learning_rate": 1e-3}}
    assert got[3] == {"hidden": 8, "training": {"max_epochs": 3, "learning_rate": 1e-2}}
    assert spec.params == {"hidden": 8, "training": {"max_epochs": 3}}  # not modified
    assert with_setting({}, "training.patience", 2) == {"training": {"patience": 2}}
    with pytest.raises(ConfigError, match=r"'hidden' is 8 .* not a table"):
        with_setting({"hidden": 8}, "hidden.width", 2)
    with pytest.raises(ConfigError, match="non-empty list"):
        candidates(EstimatorSpec("crn", search={"hidden": []}))
    with pytest.raises(ConfigError, match="seed is not a knob"):
        EstimatorSpec("crn", search={"seed": [0, 1]})


def test_tune_chooses_by_factual_rmse_and_writes_a_config_to_evaluate(tmp_path) -> None:
    crn = fast_params("crn")
    cfg = _config(tmp_path, [
        {"name": "crn", "params": crn, "search": {"hidden": [4, 8]}},
        {"name": "rmsn", "params": fast_params("rmsn"), "search": {"hidden": [4, 8]}},
        {"name": "zero-effect"},
    ], reference="crn")  # fmt: skip
    out = tmp_path / "tuned"
    chosen = run_tuning(cfg, out=out, log=lambda m: None, progress=False)
    assert set(chosen) == {"crn", "rmsn"}
    cells = json.loads((out / "tuning.json").read_text())
    results = pd.read_csv(out / "cells" / "results.csv")
    assert set(results["seed"]) == {3, 4}  # tuning worlds only
    for key, pick in chosen.items():
        assert pick == cells[key]
        means = (
            results[results["estimator"].str.startswith(f"{key}=candidate-")]
            .groupby("estimator")["factual_rmse"]
            .mean()
        )
        assert pick["factual_rmse"] == pytest.approx(means.min())
        assert means.idxmin() == f"{key}=candidate-{pick['candidate']}"
    table = (out / "tuning.md").read_text()
    assert "Not searched (their params as configured): zero-effect." in table
    assert "PEHE" not in table and "pehe" not in table
    # the written config is the evaluation's: chosen params, no search, same seeds
    from kgcm.config import load_config

    tuned = load_config(BenchmarkConfig, out / "tuned.toml", ())
    assert tuned.seeds == (7,) and tuned.tuning_seeds == (3, 4)
    by_key = {e.key: e for e in tuned.estimators}
    assert by_key["crn"].params == chosen["crn"]["params"] and not by_key["crn"].search
    assert by_key["zero-effect"].params == {}


def test_tune_refuses_unequal_budgets_and_configs_without_tuning_worlds(tmp_path) -> None:
    unequal = _config(tmp_path, [
        {"name": "crn", "search": {"hidden": [4, 8]}},
        {"name": "rmsn", "search": {"hidden": [4, 8, 16]}},
    ], reference="crn")  # fmt: skip
    with pytest.raises(ConfigError, match=r"same budget.*\{'crn': 2, 'rmsn': 3\}"):
        run_tuning(unequal, log=lambda m: None)
    bare = _config(tmp_path, [{"name": "crn"}], reference="crn")
    with pytest.raises(ConfigError, match="no estimator of the config has a search"):
        run_tuning(bare, log=lambda m: None)
    no_worlds = _config(tmp_path, [{"name": "crn", "search": {"hidden": [4]}}],
                        reference="crn", tuning_seeds=[])  # fmt: skip
    with pytest.raises(ConfigError, match="needs tuning worlds"):
        run_tuning(no_worlds, log=lambda m: None)


def test_cli_tune_prints_the_table_and_refuses_a_config_without_tuning_worlds(tmp_path) -> None:
    from typer.testing import CliRunner

    from kgcm.cli import app

    cfg = tmp_path / "b.toml"
    cfg.write_text(
        'name = "t"\nseeds = [7]\ntuning_seeds = [3]\nreference = "crn"\nn_jobs = 1\n'
        '[[datasets]]\nname = "tiny"\nkind = "arctic"\nparams = {ny = 3, nx = 3, days = 40, '
        "window = 10}\n"
        '[[estimators]]\nname = "crn"\nparams = {hidden = 4, rep_dim = 2, '
        "training = {max_epochs = 1, progress = false}}\nsearch = {hidden = [4, 8]}\n"
    )
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, ["tune", "--config", str(cfg), "--out", str(out),
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| crn | 1 | hidden = 8 |" in result.output and (out / "tuned.toml").is_file()
    bad = CliRunner().invoke(app, ["tune", "--config", str(cfg), "--set", "tuning_seeds=[]"])
    assert bad.exit_code != 0 and "needs tuning worlds" in bad.output


def test_a_benchmark_of_a_config_with_searches_says_it_runs_them_untuned(tmp_path) -> None:
    from kgcm.experiments.benchmark import run_benchmark

    cfg = _config(tmp_path, [{"name": "zero-effect", "search": {"foo": [1, 2]}}],
                  reference="zero-effect")  # fmt: skip
    said: list[str] = []
    run_benchmark(cfg, log=said.append, progress=False)
    assert any("['zero-effect'] have a search" in m and "untuned" in m for m in said), said
