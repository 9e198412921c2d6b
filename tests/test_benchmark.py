"""The benchmark harness: grid, resumability, tables, paired intervals, ablation variants."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kgcm.config import from_dict, load_config
from kgcm.errors import ConfigError, DataError, InputError
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
    assert specs[0].key == "mmd+adj+learned-prior+decoder"
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
    [
        "benchmark-arctic",
        "benchmark-arctic-replication",
        "benchmark-arctic-demo",
        "benchmark-paper",
        "benchmark-ihdp",
        "benchmark-coverage",
    ],
)
def test_shipped_configs_load(name) -> None:
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs" / f"{name}.toml")
    assert len(cfg.seeds) >= 5
    assert cfg.reference in {e.key for e in cfg.estimators}


def test_demo_budget_config_is_the_demo_task() -> None:
    """configs/benchmark-arctic-demo.toml runs the demo's world, split, scenario and budget."""
    from kgcm.experiments.demo import DemoConfig

    path = ROOT / "configs" / "benchmark-arctic-demo.toml"
    cfg = load_config(bm.BenchmarkConfig, path)
    demo = DemoConfig()
    (dataset,) = cfg.datasets
    assert dataset.kind == "arctic" and dataset.params == {}  # the default world, as the demo's
    assert demo.arctic == type(demo.arctic)(seed=demo.arctic.seed)
    assert (demo.window, demo.test_fraction, demo.scenario.kind, demo.scenario.value) == (
        30,
        0.25,
        "scale",
        1.5,
    )  # the arctic task's defaults (window, test_fraction, scale)
    budget = demo.estimator.params["training"]["max_epochs"]
    for e in cfg.estimators:
        if e.name != "zero-effect":
            assert e.params["training"]["max_epochs"] == budget, e.key
    assert cfg.estimators[0].name == demo.estimator.name == cfg.reference
    # the documented ensemble variant loads
    ens = load_config(
        bm.BenchmarkConfig,
        path,
        [
            "seeds=[0,1]",
            'estimators=[{name = "kgcm-vae", params = {n_ensemble = 3, training = '
            '{max_epochs = 40, progress = false}}}, {name = "zero-effect"}]',
        ],
    )
    assert ens.estimators[0].params["n_ensemble"] == 3 and ens.seeds == (0, 1)


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
    # the two variants differ in the MMD weight only: the paper's 0.1 against 0
    variants = {e.key: e.params for e in bm.ablation_estimators(load_config(bm.AblateConfig, cfg))}
    assert variants["no-mmd"] == {**variants["mmd"], "mmd_weight": 0.0}
    assert variants["mmd"]["mmd_weight"] == 0.1


def test_tuning_and_evaluation_worlds_are_disjoint() -> None:
    spec = {
        "datasets": [{"name": "a", "kind": "arctic"}],
        "estimators": [{"name": "zero-effect"}],
        "tuning_seeds": [100, 101],
    }
    assert from_dict(bm.BenchmarkConfig, {**spec, "seeds": [1000]}).tuning_seeds == (100, 101)
    with pytest.raises(ConfigError, match=r"seeds \[101\] are tuning worlds"):
        from_dict(bm.BenchmarkConfig, {**spec, "seeds": [1000, 101]})
    # the shipped evaluation configs name their tuning worlds
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs/benchmark-arctic.toml")
    assert cfg.tuning_seeds and not set(cfg.seeds) & set(cfg.tuning_seeds)


def test_holm_adjusted_p_values() -> None:
    from kgcm.metrics import holm

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, max(0.09, 0.08), max(., 0.5)
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])
    assert np.isnan(holm([np.nan])).all() and holm([]).shape == (0,)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def test_paired_table_is_corrected_for_the_number_of_comparisons(capsys, tmp_path) -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    rows = []
    # "a" is clearly worse than the reference; "b" to "k" differ by noise only: 11 comparisons
    for seed in range(5):
        rows.append({"dataset": "d", "estimator": "ref", "seed": seed, "pehe": 1.0, "status": "ok"})
        rows.append(
            {
                "dataset": "d",
                "estimator": "a",
                "seed": seed,
                "pehe": 1.5 + 0.01 * seed,
                "status": "ok",
            }
        )
        for k in "bcdefghijk":
            pehe = 1.0 + 0.05 * rng.normal()
            rows.append(
                {"dataset": "d", "estimator": k, "seed": seed, "pehe": pehe, "status": "ok"}
            )
    paired = bm.paired_differences(pd.DataFrame(rows), "ref").set_index("other")
    assert (paired["family"] == 11).all()
    raw = paired["p_value"].to_numpy()
    assert paired.loc["a", "p_value"] < 1e-5 and paired.loc["a", "excludes_zero"]
    # Holm never lowers a p-value and Bonferroni intervals are wider than uncorrected ones
    assert (paired["p_holm"].to_numpy() >= raw - 1e-15).all()
    assert (
        (paired["upper_corrected"] - paired["lower_corrected"])
        > (paired["upper"] - paired["lower"])
    ).all()
    half = stats.t.ppf(1 - 0.05 / 22, 4) * paired.loc["b", "sd_diff"] / np.sqrt(5)
    assert paired.loc["b", "upper_corrected"] == pytest.approx(paired.loc["b", "mean_diff"] + half)
    # a comparison significant uncorrected but not after Holm is not reported as excluding zero
    borderline = paired[(paired["p_value"] < 0.05) & (paired["p_holm"] >= 0.05)]
    assert not borderline["excludes_zero"].any()
    # the docs-table script lays out the same numbers
    import importlib.util

    spec = importlib.util.spec_from_file_location("paired_holm", ROOT / "benchmarks/paired_holm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    frame = pd.DataFrame(rows).assign(ate_error=0.0, coverage=np.nan, width=np.nan, fit_s=1.0)
    frame.to_csv(tmp_path / "results.csv", index=False)
    mod.main([str(tmp_path / "results.csv"), "ref"])
    out = capsys.readouterr().out
    assert "Holm family: 11 comparisons" in out and "| a | 5 |" in out


FORECAST_WORLD = {"ny": 6, "nx": 6, "days": 90, "history": 12, "horizon": 6}


def test_forecast_truth_without_feedback_is_the_window_effect() -> None:
    from kgcm.sequences import split_units, to_sequences
    from kgcm.synthetic.arctic import simulate_arctic

    field = bm.make_task(bm.DatasetSpec("f", "arctic-forecast", dict(FORECAST_WORLD)), 3)
    cell = bm.make_task(
        bm.DatasetSpec("c", "arctic-forecast", {**FORECAST_WORLD, "scope": "cell"}), 3
    )
    # without feedback the ocean does not answer the plan: regional and one-cell plans agree,
    # and both are the direct window effect of the scaled plan
    np.testing.assert_allclose(field.true_effect, cell.true_effect, atol=1e-12)
    sim = simulate_arctic(ny=6, nx=6, days=90, seed=3)
    seqs = to_sequences(sim.dataset, window=18)
    test = seqs.subset(split_units(seqs, test_fraction=0.25, seed=3, by="cell")[1])
    want = sim.window_effects(field.T1_test, test.cells, test.starts, 18)[:, 12:]
    np.testing.assert_allclose(field.true_effect, want, atol=1e-6)
    assert field.X_test.shape[1] == 12 and field.Y_test.shape[1] == 12
    assert field.T0_test.shape[1] == 18 and field.true_effect.shape[1] == 6
    np.testing.assert_array_equal(field.T1_test[:, :12], field.T0_test[:, :12])


def test_forecast_task_runs_and_scores(tmp_path) -> None:
    from conftest import fast_params

    data = {
        "name": "forecast",
        "seeds": [100],
        "n_jobs": 1,
        "out": str(tmp_path),
        "datasets": [
            {
                "name": "fc",
                "kind": "arctic-forecast",
                "params": {**FORECAST_WORLD, "ocean_feedback": 1.0, "ice_feedback": 0.5},
            }
        ],
        "estimators": [
            {"name": "kgcm-vae", "params": fast_params("kgcm-vae")},
            {"name": "zero-effect"},
            {"name": "s-learner", "params": fast_params("s-learner")},
        ],
    }
    results = bm.run_benchmark(
        from_dict(bm.BenchmarkConfig, data), log=lambda _: None, progress=False
    )
    rows = results.set_index("estimator")
    assert rows.loc["kgcm-vae", "status"] == "ok" and rows.loc["zero-effect", "status"] == "ok"
    assert 0 <= rows.loc["kgcm-vae", "coverage"] <= 1 and rows.loc["kgcm-vae", "pehe"] > 0
    # the second level, from the same fit: the 90% interval, and the median width
    assert 0 <= rows.loc["kgcm-vae", "coverage_90"] <= rows.loc["kgcm-vae", "coverage"]
    assert rows.loc["kgcm-vae", "median_width"] > 0
    assert np.isnan(rows.loc["kgcm-vae", "cf_rmse_1"])
    # the zero-effect line is the RMS of the true effect on the plan steps
    task = bm.make_task(
        bm.DatasetSpec("fc", "arctic-forecast", dict(data["datasets"][0]["params"])), 100
    )
    assert rows.loc["zero-effect", "pehe"] == pytest.approx(np.sqrt(np.mean(task.true_effect**2)))
    assert rows.loc["s-learner", "status"].startswith("not applicable: SLearner cannot forecast")


def test_forecast_params_are_checked() -> None:
    cfg = {
        "datasets": [{"name": "f", "kind": "arctic-forecast", "params": {"horizon": 0}}],
        "estimators": [{"name": "zero-effect"}],
        "reference": "zero-effect",
    }
    with pytest.raises(ConfigError, match="horizon must be an integer >= 1"):
        bm.check_settings(from_dict(bm.BenchmarkConfig, cfg), None)
    cfg["datasets"][0]["params"] = {"scope": "feild"}
    with pytest.raises(ConfigError, match="Did you mean 'field'"):
        bm.check_settings(from_dict(bm.BenchmarkConfig, cfg), None)


def test_forecast_config_evaluates_on_seeds_disjoint_from_tuning() -> None:
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-forecast.toml")
    assert cfg.seeds == (1000, 1001, 1002, 1003, 1004)
    assert {d.kind for d in cfg.datasets} == {"arctic-forecast"}
    text = (ROOT / "configs" / "benchmark-forecast.toml").read_text()
    assert "tuning worlds 100-101" in text
    bm.check_settings(cfg, None)


def test_rows_carry_the_code_revision_and_a_code_change_reruns(tmp_path, monkeypatch) -> None:
    import kgcm
    from kgcm import provenance

    code = {"kgcm_version": kgcm.__version__, "code_revision": "a" * 40}
    monkeypatch.setattr(provenance, "code_fingerprint", lambda package=None: dict(code))
    ihdp = [
        {"name": "ihdp", "kind": "ihdp", "params": {"path": str(ROOT / "benchmarks/data/ihdp")}}
    ]
    cfg = _config(
        tmp_path / "out",
        datasets=ihdp,
        estimators=[{"name": "zero-effect"}],
        reference="zero-effect",
        seeds=[0],
    )

    def run() -> tuple[list[str], pd.DataFrame]:
        messages: list[str] = []
        bm.run_benchmark(cfg, log=messages.append, progress=False)
        return messages, pd.read_csv(tmp_path / "out" / "results.csv", dtype=str)

    _, rows = run()
    assert (rows["code_revision"] == "a" * 40).all() and len(rows) == 1
    assert (rows["kgcm_version"] == kgcm.__version__).all()
    messages, _ = run()
    assert "1 done already, 0 to run" in messages[0]
    # a new commit, a dirty tree and a new version each make every stored cell stale
    for change in (
        {"code_revision": "b" * 40},
        {"code_revision": "b" * 40 + "+dirty", "code_changes": "1234"},
        {"code_revision": "b" * 40 + "+dirty", "code_changes": "5678"},
        {"kgcm_version": "9.9.9"},
    ):
        code.update(change)
        messages, rows = run()
        assert "0 done already, 1 to run" in messages[0], (change, messages[0])
        assert "1 stored with other settings" in messages[0]
        assert (rows["code_revision"] == code["code_revision"]).all()
        assert (rows["kgcm_version"] == code["kgcm_version"]).all()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("benchmark-*.toml")), ids=str)
def test_every_shipped_benchmark_config_passes_the_settings_check(path) -> None:
    # the check a run makes before any cell; a seaice config once failed it for want of a
    # seaice branch (its keys were checked against IHDP's)
    bm.check_settings(load_config(bm.BenchmarkConfig, path), path.parent)


def test_seaice_dataset_params_are_checked_by_name() -> None:
    cfg = load_config(bm.BenchmarkConfig, ROOT / "configs" / "benchmark-seaice.toml")
    bad = replace(cfg.datasets[0], params={**cfg.datasets[0].params, "n_evpp": 30})
    with pytest.raises(ConfigError, match=r"seaice\.n_evpp.*Did you mean .n_evp."):
        bm.check_settings(replace(cfg, datasets=[bad]), ROOT / "configs")
