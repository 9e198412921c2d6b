"""The shared interval strategy (kgcm.inference): model uncertainty, grouped bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

import kgcm
from conftest import fast_params
from kgcm.errors import ConfigError, InputError
from kgcm.estimators import estimator_class, list_estimators
from kgcm.estimators.base import BaseEstimator
from kgcm.inference import Inference, block_groups, resample_groups


def make(name: str, **extra):
    return kgcm.make_estimator(name, seed=0, **{**fast_params(name), **extra})


# ---- the strategy object -------------------------------------------------------------------


def test_coerce_accepts_names_mappings_and_itself():
    assert Inference.coerce(None) == Inference()
    assert Inference.coerce("bootstrap").method == "bootstrap"
    assert Inference.coerce({"method": "bootstrap", "n_bootstrap": 3}).n_bootstrap == 3
    strategy = Inference("bootstrap", n_bootstrap=4, block=2)
    assert Inference.coerce(strategy) is strategy
    assert Inference.coerce(strategy.to_dict()) == strategy


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("bootsrap", r"one of \['model', 'bootstrap', 'parametric'\].*bootstrap"),
        ({"method": "bootstrap", "n_bootstrap": 1}, "n_bootstrap must be an integer >= 2"),
        ({"method": "bootstrap", "n_boot": 3}, r"unknown inference setting\(s\) \['n_boot'\]"),
        ({"block": 0}, "block must be an integer >= 1"),
        (3, "inference must be 'model', 'bootstrap'"),
    ],
)
def test_bad_strategies_are_refused_with_the_fix(value, match):
    with pytest.raises(ConfigError, match=match):
        Inference.coerce(value)


def test_block_groups_tile_the_grid():
    cells = np.array([[0, 0], [0, 3], [3, 3], [4, 0], [7, 7], [0, 1]])
    g = block_groups(cells, 4)
    assert g[0] == g[1] == g[2] == g[5]  # rows 0-3, cols 0-3
    assert len({g[0], g[3], g[4]}) == 3


def test_resample_groups_draws_whole_groups():
    groups = np.repeat(np.arange(5), [1, 2, 3, 4, 5])
    idx = resample_groups(groups, np.random.default_rng(0))
    drawn = groups[idx]
    for g in np.unique(drawn):  # every drawn group comes whole, possibly several times
        assert np.sum(drawn == g) % np.sum(groups == g) == 0
    # the number of groups drawn is the number of groups
    counts = {g: np.sum(drawn == g) // np.sum(groups == g) for g in np.unique(drawn)}
    assert sum(counts.values()) == 5


# ---- one public interval path for every estimator -------------------------------------------


def test_no_estimator_overrides_the_public_interval_methods():
    public = ("effect", "effect_interval", "effect_with_interval", "predict", "fit")
    for name in list_estimators():
        cls = estimator_class(name)
        for method in public:
            assert getattr(cls, method) is getattr(BaseEstimator, method), (name, method)


def test_dml_normal_intervals_come_through_the_shared_path(panel):
    pytest.importorskip("econml")
    est = make("linear-dml").fit(panel["Y"], panel["T"], X=panel["X"])
    T1 = panel["T"] + 1.0
    effect, lower, upper = est.effect_with_interval(panel["X"], T0=panel["T"], T1=T1)
    np.testing.assert_allclose(effect, est.effect(panel["X"], T0=panel["T"], T1=T1))
    np.testing.assert_allclose(effect - lower, upper - effect, rtol=1e-9, atol=1e-12)
    lo90, hi90 = est.effect_interval(panel["X"], T0=panel["T"], T1=T1, alpha=0.1)
    assert np.all(hi90 - lo90 < upper - lower)  # normal quantiles: 1.645 / 1.960 of the width
    np.testing.assert_allclose((hi90 - lo90) / (upper - lower), 1.6448536 / 1.9599640, rtol=1e-6)


# ---- the grouped bootstrap ----------------------------------------------------------------


@pytest.fixture(scope="module")
def boot_fit(panel):
    groups = np.arange(panel["Y"].shape[0]) // 4  # 10 groups of 4 units
    point = make("s-learner").fit(panel["Y"], panel["T"], X=panel["X"])
    boot = make("s-learner").fit(
        panel["Y"],
        panel["T"],
        X=panel["X"],
        inference={"method": "bootstrap", "n_bootstrap": 6},
        groups=groups,
    )
    return point, boot


def test_bootstrap_interval_adds_the_refits_spread_with_a_t_quantile():
    from scipy import stats

    from kgcm.inference import bootstrap_interval

    full = np.array([[1.0, 2.0], [3.0, 2.0]])  # two draws of two effects: mean 2, 2; var 2, 0
    refits = [np.array([[m, 2.0]]) for m in (1.0, 2.0, 3.0)]  # refit means: var 1 and 0
    lower, upper = bootstrap_interval(full, refits, 0.05)
    t = stats.t.ppf(0.975, 2)
    np.testing.assert_allclose(lower, [2.0 - t * np.sqrt(3.0), 2.0])
    np.testing.assert_allclose(upper, [2.0 + t * np.sqrt(3.0), 2.0])
    # a point estimator (one draw) gets the refits' spread alone; 90% is narrower than 95%
    lo90, up90 = bootstrap_interval(full[:1], refits, 0.10)
    np.testing.assert_allclose(up90 - lo90, [2 * stats.t.ppf(0.95, 2), 0.0])
    with pytest.raises(InputError, match="at least 2 refits"):
        bootstrap_interval(full, refits[:1], 0.05)


def test_bootstrap_gives_intervals_to_a_point_estimator(panel, boot_fit):
    point, boot = boot_fit
    T1 = panel["T"] + 1.0
    assert not point.gives_intervals()
    with pytest.raises(NotImplementedError, match="inference='bootstrap'"):
        point.effect_interval(panel["X"], T0=panel["T"], T1=T1)
    assert boot.gives_intervals() and len(boot.bootstrap_) == 6
    effect, lower, upper = boot.effect_with_interval(panel["X"], T0=panel["T"], T1=T1)
    # the point effect is the full fit's, unchanged by the refits
    np.testing.assert_allclose(effect, point.effect(panel["X"], T0=panel["T"], T1=T1))
    assert np.all(lower <= upper) and np.mean(upper - lower) > 0
    # members are refitted on different resamples: their effects differ
    members = [m.effect(panel["X"], T0=panel["T"], T1=T1) for m in boot.bootstrap_]
    assert np.std(np.stack(members), axis=0).mean() > 0


def test_bootstrap_widens_model_intervals(panel):
    name = "kgcm-vae"
    T1 = panel["T"] + 1.0
    groups = np.arange(panel["Y"].shape[0]) // 4
    model = make(name).fit(panel["Y"], panel["T"], X=panel["X"])
    boot = make(name).fit(
        panel["Y"], panel["T"], X=panel["X"], inference="bootstrap", groups=groups
    )
    lo_m, hi_m = model.effect_interval(panel["X"], T0=panel["T"], T1=T1)
    lo_b, hi_b = boot.effect_interval(panel["X"], T0=panel["T"], T1=T1)
    # the full fit is the same model; the refits add their spread around it
    np.testing.assert_allclose(
        boot.effect(panel["X"], T0=panel["T"], T1=T1),
        model.effect(panel["X"], T0=panel["T"], T1=T1),
    )
    assert np.median(hi_b - lo_b) > 1.5 * np.median(hi_m - lo_m)


def test_bootstrap_round_trips_through_save(tmp_path, panel, boot_fit):
    _, boot = boot_fit
    path = tmp_path / "boot.kgcm"
    boot.save(path)
    back = kgcm.load(path)
    assert back.inference_ == boot.inference_ and len(back.bootstrap_) == 6
    T1 = panel["T"] + 1.0
    for a, b in zip(
        boot.effect_with_interval(panel["X"], T0=panel["T"], T1=T1),
        back.effect_with_interval(panel["X"], T0=panel["T"], T1=T1),
        strict=True,
    ):
        np.testing.assert_allclose(a, b)


def test_bootstrap_is_deterministic_under_the_seed(panel, boot_fit):
    _, boot = boot_fit
    again = make("s-learner").fit(
        panel["Y"],
        panel["T"],
        X=panel["X"],
        inference={"method": "bootstrap", "n_bootstrap": 6},
        groups=np.arange(panel["Y"].shape[0]) // 4,
    )
    T1 = panel["T"] + 1.0
    np.testing.assert_array_equal(
        boot.effect_interval(panel["X"], T0=panel["T"], T1=T1),
        again.effect_interval(panel["X"], T0=panel["T"], T1=T1),
    )


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        (np.zeros(7), r"one label per training unit, shape \(40,\)"),
        (np.zeros(40), "a single label"),
        (np.zeros((40, 2)), r"one label per training unit"),
    ],
)
def test_bad_groups_are_refused(panel, groups, match):
    with pytest.raises(InputError, match=match):
        make("s-learner").fit(
            panel["Y"], panel["T"], X=panel["X"], inference="bootstrap", groups=groups
        )


# ---- the experiments pass spatial blocks ---------------------------------------------------


def test_benchmark_cell_bootstraps_spatial_blocks(monkeypatch):
    from kgcm.experiments import benchmark as bm

    seen = {}
    original = BaseEstimator._fit_refits

    def spy(self, method, data, X, groups, n_refits):
        seen["groups"], seen["n"] = groups, n_refits
        return original(self, method, data, X, groups, n_refits)

    monkeypatch.setattr(BaseEstimator, "_fit_refits", spy)
    dataset = bm.DatasetSpec("arctic", "arctic", {"ny": 8, "nx": 8, "days": 60})
    spec = bm.EstimatorSpec(
        "cf-rnn",
        params=fast_params("cf-rnn"),
        inference={"method": "bootstrap", "n_bootstrap": 2, "block": 4},
    )
    row = bm.run_cell(dataset, spec, 0, tau=5, alpha=0.05)
    assert row["status"] == "ok", row
    assert 0.0 <= row["coverage"] <= 1.0 and row["width"] > 0
    assert seen["n"] == 2 and 2 <= np.unique(seen["groups"]).size <= 4  # 2x2 blocks of 4x4
    # the strategy is part of the cell's fingerprint: changing it reruns the cell
    plain = bm.EstimatorSpec("cf-rnn", params=fast_params("cf-rnn"))
    assert bm.cell_spec(dataset, spec, 5, 0.05) != bm.cell_spec(dataset, plain, 5, 0.05)


def test_configs_refuse_a_bad_strategy():
    from kgcm.config import EstimatorConfig
    from kgcm.experiments import benchmark as bm

    with pytest.raises(ConfigError, match="inference method must be one of"):
        EstimatorConfig(inference={"method": "jackknife"})
    with pytest.raises(ConfigError, match="n_bootstrap must be an integer >= 2"):
        bm.EstimatorSpec("s-learner", inference={"method": "bootstrap", "n_bootstrap": 0})


def test_one_block_is_refused():
    from kgcm.inference import fit_arguments

    cells = np.array([[0, 0], [1, 1], [2, 2]])
    with pytest.raises(ConfigError, match="one block"):
        fit_arguments({"method": "bootstrap", "block": 8}, cells)
    assert fit_arguments(None, cells) == {"inference": Inference()}


@pytest.mark.slow
def test_bootstrap_intervals_cover_more_of_the_true_effects_than_the_model_alone():
    """Coverage regression in small form: on an arctic world (seed 0, 8 x 8 cells, 90 days,
    8 epochs), KGCM-VAE's own 95% intervals covered 0.843 of the true effects (mean width
    0.315 m) and the block bootstrap's (3 refits, 4 x 4 blocks; t on 2 degrees of freedom)
    1.000 (1.115 m); seed 1: 0.656 -> 0.998 (0.186 -> 0.771 m). The bounds sit inside those
    margins."""
    from kgcm.experiments import benchmark as bm

    dataset = bm.DatasetSpec("arctic", "arctic", {"ny": 8, "nx": 8, "days": 90})
    params = {**fast_params("kgcm-vae"), "training": {"max_epochs": 8, "progress": False}}
    model = bm.run_cell(dataset, bm.EstimatorSpec("kgcm-vae", params=params), 0, tau=5, alpha=0.05)
    boot = bm.run_cell(
        dataset,
        bm.EstimatorSpec(
            "kgcm-vae",
            params=params,
            inference={"method": "bootstrap", "n_bootstrap": 3, "block": 4},
        ),
        0,
        tau=5,
        alpha=0.05,
    )
    assert model["status"] == boot["status"] == "ok"
    assert boot["pehe"] == pytest.approx(model["pehe"])  # same point effect
    assert boot["coverage"] > model["coverage"] + 0.12
    assert boot["width"] > 2.8 * model["width"]
    assert boot["coverage"] > 0.9


@pytest.mark.parametrize(
    ("name", "match", "why"),
    [
        (
            "gst-unet",
            "GSTUNet cannot use inference='bootstrap': it predicts whole grid frames",
            "its intervals are already a cell bootstrap",
        ),
        (
            "linear-dml",
            "LinearDML cannot use inference='bootstrap': EconML's standard errors",
            "EconML's standard errors already carry",
        ),
    ],
)
def test_estimators_that_cannot_be_bootstrapped_say_why(panel, name, match, why):
    with pytest.raises(ConfigError, match=match):
        make(name).fit(panel["Y"], panel["T"], X=panel["X"], inference="bootstrap")
    with pytest.raises(ConfigError, match=rf"cannot use inference='parametric': {why}"):
        make(name).fit(panel["Y"], panel["T"], X=panel["X"], inference="parametric")


def test_groups_without_a_bootstrap_are_refused(panel):
    with pytest.raises(InputError, match="groups is read by inference='bootstrap' or"):
        make("s-learner").fit(panel["Y"], panel["T"], X=panel["X"], groups=np.arange(40) // 4)


@pytest.mark.parametrize("method", ["bootstrap", "parametric"])
def test_a_failed_refit_names_itself_and_leaves_no_half_state(panel, monkeypatch, method):
    est = make("s-learner").fit(panel["Y"], panel["T"], X=panel["X"])
    calls = {"n": 0}
    original = type(est)._fit

    def flaky(self, data):
        calls["n"] += 1
        if calls["n"] == 3:  # the full fit, one refit, then this one fails
            raise InputError("the treatment T is constant")
        return original(self, data)

    monkeypatch.setattr(type(est), "_fit", flaky)
    with pytest.raises(InputError, match=rf"{method} refit 2/4: the treatment T is constant"):
        est.fit(
            panel["Y"],
            panel["T"],
            X=panel["X"],
            inference={"method": method, "n_bootstrap": 4},
        )
    assert est.inference_ == Inference() and est.bootstrap_ == []  # the earlier fit's state


def test_a_series_bootstraps_single_units():
    from kgcm.inference import fit_arguments

    args = fit_arguments({"method": "bootstrap"}, np.zeros((5, 0), dtype=int))
    assert args["groups"] is None and args["inference"].method == "bootstrap"


def test_benchmark_configs_check_the_evaluation_design():
    from kgcm.config import from_dict
    from kgcm.experiments import benchmark as bm

    def config(params):
        return from_dict(
            bm.BenchmarkConfig,
            {
                "datasets": [{"name": "a", "kind": "arctic", "params": params}],
                "estimators": [{"name": "zero-effect"}],
                "reference": "zero-effect",
            },
        )

    bm.check_settings(config({"burn_in": 9, "shift_sd": 0.2, "split": "block", "block": 4}), None)
    with pytest.raises(ConfigError, match="block must be an integer >= 1"):
        bm.check_settings(config({"split": "block", "block": 0}), None)
    with pytest.raises(ConfigError, match="burn_in must be an integer"):
        bm.check_settings(config({"burn_in": 40}), None)
    plain, model = (
        bm.EstimatorSpec("zero-effect"),
        bm.EstimatorSpec("zero-effect", inference={"method": "model"}),
    )
    dataset = bm.DatasetSpec("a", "arctic", {})
    assert bm.cell_spec(dataset, plain, 5, 0.05) == bm.cell_spec(dataset, model, 5, 0.05)


# ---- coverage of every estimator's own intervals, in small form ------------------------------
# On kgcm.testing.make_panel (a constant effect of +2 per unit of T; T1 = T0 + 1, or the other
# arm for a binary treatment), seed 0, the 95% intervals covered: linear-dml 1.000 (width 0.04:
# the model is correctly specified, so its intervals are calibrated), dynamic-dml 0.790 (0.47),
# cevae 0.688 (60 epochs; 0.99). KGCM-VAE's coverage is pinned on an arctic world above
# (test_bootstrap_intervals_cover_more_of_the_true_effects_than_the_model_alone); GST-UNet's
# cell-bootstrap intervals need a grid and are measured in docs/benchmarks.md only. The bounds
# are about the measured figures / 1.3.
COVERAGE = {
    "linear-dml": ({}, 0.9),
    "dynamic-dml": ({}, 0.6),
    "cevae": ({"training": {"max_epochs": 60, "progress": False}}, 0.5),
}


@pytest.mark.parametrize("name", sorted(COVERAGE))
def test_own_intervals_cover_the_true_effect(name):
    from kgcm.metrics import interval_coverage
    from kgcm.testing import make_panel

    extra, bound = COVERAGE[name]
    est = make(name, **extra)
    binary = bool(est.tags.get("binary_treatment"))
    panel = make_panel(binary=binary, seed=0)
    T1 = 1.0 - panel["T"] if binary else panel["T"] + 1.0
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    _, lower, upper = est.effect_with_interval(panel["X"], T0=panel["T"], T1=T1)
    coverage = interval_coverage(2.0 * (T1 - panel["T"]), lower, upper)
    assert coverage >= bound, (name, coverage)


def test_every_interval_estimator_has_a_coverage_check():
    covered = set(COVERAGE) | {"kgcm-vae", "gst-unet", "zero-effect"}
    assert set(list_estimators(intervals=True)) <= covered


# ---- the parametric strategy ----------------------------------------------------------------


def test_parametric_interval_counts_a_shared_bias_the_bootstrap_cannot_see():
    from scipy import stats

    from kgcm.inference import bootstrap_interval, parametric_interval

    full = np.array([[1.0, 2.0], [3.0, 2.0]])  # two draws: means 2, 2; variances 2, 0
    # every refit misses the simulated world's effect (the full fit's) by the same +1 on the
    # first effect: a bias with no spread, and exact on the second
    refits = [np.array([[3.0, 2.0]]) for _ in range(3)]
    lower, upper = parametric_interval(full, refits, 0.05)
    t = stats.t.ppf(0.975, 3)  # R degrees of freedom: squared errors about a known centre
    np.testing.assert_allclose(lower, [2.0 - t * np.sqrt(2.0 + 1.0), 2.0])
    np.testing.assert_allclose(upper, [2.0 + t * np.sqrt(2.0 + 1.0), 2.0])
    b_lo, b_up = bootstrap_interval(full[:1], refits, 0.05)  # the refits agree: no width
    np.testing.assert_allclose(b_up - b_lo, [0.0, 0.0])
    with pytest.raises(InputError, match="at least 2 refits"):
        parametric_interval(full, refits[:1], 0.05)


def test_parametric_refits_see_the_fit_plus_its_residuals_signed_by_group(panel, monkeypatch):
    cls = estimator_class("s-learner")
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original = cls.fit

    def recording(self, Y, T, **kw):
        seen.append((np.array(Y, dtype=float), np.array(T, dtype=float)))
        return original(self, Y, T, **kw)

    monkeypatch.setattr(cls, "fit", recording)
    groups = np.arange(panel["Y"].shape[0]) // 4  # 10 groups of 4 units
    est = make("s-learner").fit(
        panel["Y"],
        panel["T"],
        X=panel["X"],
        inference={"method": "parametric", "n_bootstrap": 3},
        groups=groups,
    )
    assert len(seen) == 4 and len(est.bootstrap_) == 3
    fitted = est.predict(panel["X"], panel["T"])
    residuals = panel["Y"] - fitted
    flipped_somewhere = False
    for Y_sim, T_sim in seen[1:]:
        np.testing.assert_array_equal(T_sim, panel["T"])  # same units, same treatments
        signs = np.sign((Y_sim - fitted)[:, 0] / residuals[:, 0])
        np.testing.assert_allclose(Y_sim, fitted + signs[:, None] * residuals, atol=1e-9)
        assert all(np.unique(signs[groups == g]).size == 1 for g in np.unique(groups))
        flipped_somewhere |= bool(np.any(signs < 0) and np.any(signs > 0))
    assert flipped_somewhere
    # the point effect is the full fit's; the interval comes from the refits' errors
    from kgcm.inference import parametric_interval

    T1 = panel["T"] + 1.0
    effect, lower, upper = est.effect_with_interval(panel["X"], T0=panel["T"], T1=T1)
    point = make("s-learner").fit(panel["Y"], panel["T"], X=panel["X"])
    np.testing.assert_allclose(effect, point.effect(panel["X"], T0=panel["T"], T1=T1))
    paths = (panel["X"], panel["T"], T1)
    own = est._effect_and_draws(*paths)[1]
    refits = [m._effect_and_draws(*paths)[1] for m in est.bootstrap_]
    expected = parametric_interval(own, refits, 0.05)
    np.testing.assert_allclose(lower, expected[0])
    np.testing.assert_allclose(upper, expected[1])
    assert np.mean(upper - lower) > 0


def test_parametric_strategy_draws_blocks_and_says_so():
    from kgcm.inference import describe, fit_arguments

    cells = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(-1, 2)
    args = fit_arguments({"method": "parametric", "n_bootstrap": 3, "block": 4}, cells)
    assert args["inference"].method == "parametric" and np.unique(args["groups"]).size == 4
    line = describe(args["inference"], args["groups"])
    assert "3 refits on outcomes simulated from the fit" in line and "4 blocks of 4x4" in line


def test_parametric_forecast_interval_and_save(tmp_path, panel):
    from kgcm.inference import parametric_interval

    K = 8
    est = make("kgcm-vae").fit(
        panel["Y"], panel["T"], X=panel["X"], inference={"method": "parametric", "n_bootstrap": 2}
    )
    T1 = panel["T"].copy()
    T1[:, K:] += 1.0
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    effect, lower, upper = est.effect_with_interval(X, T0=panel["T"], T1=T1, Y=Y)
    assert effect.shape == lower.shape == (40, 4) and np.all(lower <= upper)
    # the same construction as the window effects, from each member's forecast draws
    plan = est._forecast_request(X, panel["T"], T1, Y)
    own = est._forecast_draws(plan)
    refits = [m._forecast_draws(plan) for m in est.bootstrap_]
    expected = parametric_interval(own, refits, 0.05)
    np.testing.assert_allclose(lower, expected[0])
    np.testing.assert_allclose(upper, expected[1])
    est.save(tmp_path / "p.kgcm")
    back = kgcm.load(tmp_path / "p.kgcm")
    assert back.inference_.method == "parametric" and len(back.bootstrap_) == 2
    for a, b in zip(
        (effect, lower, upper),
        back.effect_with_interval(X, T0=panel["T"], T1=T1, Y=Y),
        strict=True,
    ):
        np.testing.assert_allclose(a, b)
