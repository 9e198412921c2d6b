"""The benchmark harness: grid, resumability, tables, paired intervals, ablation variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kgcm.config import from_dict, load_config
from kgcm.errors import ConfigError, DataError
from kgcm.experiments import benchmark as bm

ROOT = Path(__file__).parents[1]
FAST_VAE = {
    "hidden": 8,
    "latent_dim": 4,
    "n_draws": 8,
    "training": {"max_epochs": 2, "progress": False},
}


def _config(out: Path, **extra) -> bm.BenchmarkConfig:
    data = {
        "name": "tiny",
        "seeds": [0, 1],
        "n_jobs": 1,
        "out": str(out),
        "datasets": [
            {"name": "arctic", "kind": "arctic", "params": {"ny": 6, "nx": 6, "days": 90}},
            {"name": "paper", "kind": "paper", "params": {"recipe": "v2", "lag": 3}},
            {
                "name": "ihdp",
                "kind": "ihdp",
                "params": {"path": str(ROOT / "benchmarks/data/ihdp")},
            },
        ],
        "estimators": [{"name": "kgcm-vae", "params": FAST_VAE}, {"name": "zero-effect"}],
    }
    data.update(extra)
    return from_dict(bm.BenchmarkConfig, data)


def test_grid_tables_and_resume(tmp_path, monkeypatch) -> None:
    cfg = _config(tmp_path / "out")
    results = bm.run_benchmark(cfg, log=lambda m: None, progress=False)
    assert len(results) == 3 * 2 * 2
    assert (results["status"] == "ok").all(), results["status"].tolist()
    for name in ("results.csv", "table.md", "paired.md", "paired.csv", "pehe.png", "config.toml"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "## arctic" in table and "| kgcm-vae |" in table and "(2)" in table
    # the zero-effect PEHE is the RMS of the true effect and its ATE error the |mean|, computed
    # here from the task itself, independently of the harness's scoring
    zero = results[results["estimator"] == "zero-effect"].set_index(["dataset", "seed"])
    for spec in cfg.datasets:
        for seed in cfg.seeds:
            truth = bm.make_task(spec, seed).true_effect
            row = zero.loc[(spec.name, seed)]
            assert row["pehe"] == pytest.approx(float(np.sqrt(np.mean(truth**2))), rel=1e-6)
            assert row["ate_error"] == pytest.approx(abs(float(np.mean(truth))), rel=1e-6)
    # IHDP is static: no tau-step metric
    assert results.loc[results["dataset"] == "ihdp", "cf_rmse_tau"].isna().all()
    assert results.loc[results["dataset"] == "arctic", "cf_rmse_tau"].notna().all()
    # finished cells are not rerun
    calls = []
    monkeypatch.setattr(bm, "run_cell", lambda *a, **k: calls.append(a) or {})
    again = bm.run_benchmark(cfg, log=lambda m: None, progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(again, results)


def test_changed_settings_rerun_only_their_cells(tmp_path) -> None:
    paper = [{"name": "paper", "kind": "paper", "params": {"recipe": "v1", "lag": 1}}]
    cfg = _config(tmp_path / "out", datasets=paper)
    first = bm.run_benchmark(cfg, log=lambda m: None, progress=False)
    assert first["spec"].nunique() == 2  # one fingerprint per (dataset, estimator)
    messages: list[str] = []
    changed = _config(
        tmp_path / "out",
        datasets=paper,
        estimators=[
            {"name": "kgcm-vae", "params": {**FAST_VAE, "hidden": 6}},
            {"name": "zero-effect"},
        ],
    )
    second = bm.run_benchmark(changed, log=messages.append, progress=False)
    assert (
        "2 done already, 2 to run" in messages[0] and "2 stored with other settings" in messages[0]
    )
    vae = second["estimator"] == "kgcm-vae"
    assert (second.loc[vae, "spec"] != first.loc[vae, "spec"]).all()
    pd.testing.assert_frame_equal(second[~vae], first[~vae])
    assert not np.allclose(second.loc[vae, "pehe"], first.loc[vae, "pehe"])


def test_same_seed_same_table(tmp_path) -> None:
    a = bm.run_benchmark(
        _config(
            tmp_path / "a",
            datasets=[{"name": "paper", "kind": "paper", "params": {"recipe": "v1", "lag": 1}}],
        ),
        log=lambda m: None,
        progress=False,
    )
    b = bm.run_benchmark(
        _config(
            tmp_path / "b",
            datasets=[{"name": "paper", "kind": "paper", "params": {"recipe": "v1", "lag": 1}}],
            n_jobs=2,
        ),
        log=lambda m: None,
        progress=False,
    )
    cols = ["pehe", "ate_error", "factual_rmse", "cf_rmse_1", "cf_rmse_tau"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_paired_differences_interval() -> None:
    rows = []
    diffs = [-0.3, -0.1, -0.2, -0.25, -0.15]
    for seed, d in enumerate(diffs):
        rows += [
            {"dataset": "d", "estimator": "ref", "seed": seed, "pehe": 1.0 + d, "status": "ok"},
            {"dataset": "d", "estimator": "a", "seed": seed, "pehe": 1.0, "status": "ok"},
            {"dataset": "d", "estimator": "b", "seed": seed, "pehe": 2.0 + seed, "status": "ok"},
        ]
    paired = bm.paired_differences(pd.DataFrame(rows), "ref").set_index("other")
    from scipy import stats

    half = stats.t.ppf(0.975, 4) * np.std(diffs, ddof=1) / np.sqrt(5)
    assert paired.loc["a", "mean_diff"] == pytest.approx(np.mean(diffs))
    assert paired.loc["a", "upper"] == pytest.approx(np.mean(diffs) + half)
    assert paired.loc["a", "best_other"] and not paired.loc["b", "best_other"]
    assert paired.loc["a", "excludes_zero"]


def test_not_applicable_is_recorded_not_raised(tmp_path) -> None:
    def boom(*args, **kwargs):
        from kgcm.errors import InputError

        raise InputError("T must be binary 0/1")

    row = bm.run_cell(
        bm.DatasetSpec("paper", "paper", {"recipe": "v2", "lag": 1}),
        bm.EstimatorSpec("zero-effect"),
        0,
        tau=5,
        alpha=0.05,
    )
    assert row["status"] == "ok"
    import kgcm.estimators

    original = kgcm.estimators.make_estimator
    try:
        kgcm.estimators.make_estimator = boom
        row = bm.run_cell(
            bm.DatasetSpec("paper", "paper", {"lag": 1}),
            bm.EstimatorSpec("zero-effect"),
            0,
            tau=5,
            alpha=0.05,
        )
    finally:
        kgcm.estimators.make_estimator = original
    assert row["status"].startswith("not applicable: T must be binary")


def test_ablation_variants() -> None:
    cfg = from_dict(bm.AblateConfig, {"datasets": [{"name": "a", "kind": "arctic"}]})
    specs = bm.ablation_estimators(cfg)
    assert len(specs) == 16
    assert specs[0].key == "mmd+adj+transition+decoder"
    assert specs[-1].params == {
        "mmd_weight": 0.0,
        "adjacency": "off",
        "prior": "standard",
        "decoder": False,
    }
    assert len({s.key for s in specs}) == 16
    grid = bm.ablation_benchmark(cfg)
    assert grid.reference == specs[0].key
    with pytest.raises(ConfigError, match="unknown ablation factors"):
        from_dict(bm.AblateConfig, {"factors": ["dropout"]})


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'kgcm-vae'"):
        from_dict(
            bm.BenchmarkConfig,
            {"datasets": [{"name": "a", "kind": "arctic"}], "estimators": [{"name": "kgcm-ave"}]},
        )
    with pytest.raises(ConfigError, match="kind must be one of"):
        from_dict(bm.DatasetSpec, {"name": "a", "kind": "era5"})
    with pytest.raises(ConfigError, match="labels must be unique"):
        from_dict(
            bm.BenchmarkConfig,
            {
                "datasets": [{"name": "a", "kind": "arctic"}],
                "estimators": [{"name": "zero-effect"}, {"name": "zero-effect"}],
            },
        )


def test_ihdp_dataset_takes_the_replication_split() -> None:
    from kgcm.synthetic.ihdp import load_ihdp

    path = ROOT / "benchmarks/data/ihdp"
    data = {"name": "ihdp", "kind": "ihdp", "params": {"path": str(path), "split": "replication"}}
    bm.check_settings(_config(Path("unused"), datasets=[data]), None)
    spec = from_dict(bm.DatasetSpec, data)
    task = bm.make_task(spec, 8)  # seed 8: replication 9
    rep = load_ihdp(path, 9, split="replication")
    np.testing.assert_array_equal(task.true_effect, rep.ite[rep.test])
    assert task.true_effect.shape == (75, 1)
    # unit 599 of replication 9 (true effect -203) is held out by this split, not by seed 0's
    assert 599 in rep.test and 599 not in load_ihdp(path, 9).test
    bad = {"name": "ihdp", "kind": "ihdp", "params": {"path": str(path), "split": "rando"}}
    with pytest.raises(DataError, match="split must be one of"):
        bm.make_task(from_dict(bm.DatasetSpec, bad), 0)


@pytest.mark.parametrize(
    "name",
    ["benchmark-arctic", "benchmark-arctic-replication", "benchmark-paper", "benchmark-ihdp"],
)
def test_shipped_configs_load(name) -> None:
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs" / f"{name}.toml")
    assert len(cfg.seeds) >= 5
    assert cfg.reference in {e.key for e in cfg.estimators}


def test_replication_config_differs_from_the_main_one_only_in_seeds() -> None:
    main = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-arctic.toml")
    rep = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-arctic-replication.toml")
    assert not set(main.seeds) & set(rep.seeds)
    assert rep.reference == main.reference

    def fingerprints(cfg: bm.BenchmarkConfig) -> dict[tuple[str, str], str]:
        # the harness's own notion of "same settings" (what resuming compares)
        return {
            (d.name, e.key): bm.cell_spec(d, e, cfg.tau, cfg.alpha)
            for d in cfg.datasets
            for e in cfg.estimators
        }

    main_specs = fingerprints(main)
    for cell, spec in fingerprints(rep).items():
        assert spec == main_specs[cell], cell


def test_seaice_config_evaluates_on_seeds_disjoint_from_tuning_with_arctic_budgets() -> None:
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-seaice.toml")
    # seeds 100-109 are the tuning worlds (docs/simulators.md's mobility check used 100)
    assert len(cfg.seeds) >= 3 and not set(cfg.seeds) & set(range(100, 110))
    assert {d.kind for d in cfg.datasets} == {"seaice"}
    assert sorted(d.params["confounding"] for d in cfg.datasets) == [1.0, 2.0]
    # the same training budget for every estimator the arctic benchmark runs
    arctic = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-arctic.toml")
    ours = {e.key: e.params for e in cfg.estimators}
    for e in arctic.estimators:
        assert ours[e.key] == e.params, e.key
    assert cfg.reference == "kgcm-vae"
    # the 5-day follow-up: fresh evaluation seeds, the same budgets
    short = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-seaice-short.toml")
    assert not set(short.seeds) & (set(cfg.seeds) | set(range(100, 110)))
    for e in short.estimators:
        assert ours[e.key] == e.params, e.key


def test_shipped_ablation_config_loads() -> None:
    cfg = load_config(bm.AblateConfig, ROOT / "configs" / "ablate.toml")
    assert len(bm.ablation_estimators(cfg)) == 16 and len(cfg.seeds) >= 5


def test_cli_ablate_small(tmp_path) -> None:
    from typer.testing import CliRunner

    from kgcm.cli import app

    cfg = tmp_path / "ab.toml"
    cfg.write_text(
        'seeds = [0]\nfactors = ["mmd"]\nn_jobs = 1\n'
        "params = {hidden = 8, latent_dim = 4, training = {max_epochs = 1, progress = false}}\n"
        '[[datasets]]\nname = "paper"\nkind = "paper"\nparams = {lag = 1}\n'
    )
    res = CliRunner().invoke(
        app, ["ablate", "-c", str(cfg), "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(results["estimator"]) == ["mmd", "no-mmd"]
    assert (results["status"] == "ok").all(), results["status"].tolist()
    # the two variants differ in the MMD weight only: the library default against 0
    variants = {e.key: e.params for e in bm.ablation_estimators(load_config(bm.AblateConfig, cfg))}
    assert variants["no-mmd"] == {**variants["mmd"], "mmd_weight": 0.0}
    assert "mmd_weight" not in variants["mmd"]


def test_holm_adjustment_of_the_docs_table_script() -> None:
    # benchmarks/paired_holm.py corrects docs/benchmarks.md's paired p-values
    import importlib.util

    spec = importlib.util.spec_from_file_location("paired_holm", ROOT / "benchmarks/paired_holm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, max(0.09, 0.08), max(., 0.5)
    np.testing.assert_allclose(mod.holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])
