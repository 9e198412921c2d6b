"""kgcm fit / kgcm effect on a simulated store: references, bounded counterfactuals, summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from kgcm.config import from_dict
from kgcm.experiments.fit import FitConfig, run_effect, run_fit
from kgcm.synthetic.arctic import simulate_arctic
from kgcm.treatments import Scenario

FAST = {
    "hidden": 8,
    "latent_dim": 4,
    "n_draws": 5,
    "training": {"max_epochs": 3, "progress": False},
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    ds = simulate_arctic(ny=4, nx=4, days=150, seed=0).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.to_zarr(root / "store.zarr", consolidated=True)
    config = from_dict(FitConfig, {
        "data": str(root / "store.zarr"), "window": 20, "stride": 5, "split": "cell",
        "covariates": [], "test_fraction": 0.25,
        "estimator": {"name": "kgcm-vae", "params": FAST},
    })  # fmt: skip
    run = root / "run"
    result = run_fit(config, run, log=lambda m: None)
    return run, result


def test_fit_scores_every_reference_on_the_held_out_units(fitted) -> None:
    run, result = fitted
    refs = result.metrics["references"]
    assert list(refs) == ["kgcm-vae", "climatology_recent", "climatology_full", "persistence",
                          "persistence_anomaly", "linear"]  # fmt: skip
    assert all(np.isfinite(r["rmse"]) and r["rmse"] > 0 for r in refs.values())
    assert refs["climatology_recent"]["skill"] is None
    beaten = {n for n, r in list(refs.items())[1:] if r["rmse"] <= refs["kgcm-vae"]["rmse"]}
    assert set(result.metrics["not_beaten"]) == beaten
    assert result.metrics["outcome_bounds"] == [0.0, None]
    assert (run / "fit_references.png").stat().st_size > 0


@pytest.mark.parametrize("shift", [-50.0, 50.0])
def test_counterfactual_thickness_never_goes_negative(fitted, shift) -> None:
    run, _ = fitted
    # a shift far outside the observed support (the overlap check refuses it by default): the
    # counterfactual must stay physical all the same
    summary = run_effect(run, scenario=Scenario(kind="shift", value=shift),
                         out=run / f"effects{shift:+.0f}.nc", log=lambda m: None,
                         allow_weak_overlap=True)  # fmt: skip
    assert summary["overlap"]["ok"] is False
    eff = xr.open_dataset(run / f"effects{shift:+.0f}.nc")
    cf = eff["sithick_counterfactual"].values
    assert np.isfinite(cf).any()
    assert np.nanmin(cf) >= 0.0
    for name in ("effect_lower", "effect_upper"):
        assert np.nanmin(eff["sithick"].values + eff[name].values) >= 0.0
    lower, effect = eff["effect_lower"].values, eff["effect"].values
    assert np.array_equal(np.isnan(lower), np.isnan(effect))
    assert (lower[np.isfinite(lower)] <= effect[np.isfinite(effect)]).all()
    assert "share_of_steps_interval_excludes_zero" not in summary
    assert set(summary["seasons"]) == {"DJF", "MAM", "JJA", "SON"}
    assert summary["smoothness"]["day_to_day_sd"] is not None
    eff.close()


def test_effect_summary_flags_a_sign_that_disagrees(fitted) -> None:
    run, _ = fitted
    summary = run_effect(run, out=run / "effects_sign.nc", log=lambda m: None,
                         allow_weak_overlap=True)  # fmt: skip
    saved = json.loads((run / "effects_sign.json").read_text())
    assert saved["seasons"] == summary["seasons"]
    means = [s["mean_effect"] for s in summary["seasons"].values() if s["mean_effect"] is not None]
    flip = "negative" if np.mean(means) > 0 else "positive"
    flagged = run_effect(run, scenario=Scenario(kind="scale", value=1.5, expected_sign=flip),
                         out=run / "effects_flip.nc", log=lambda m: None,
                         allow_weak_overlap=True)  # fmt: skip
    assert flagged["sign_disagrees_in"]
    for figure in ("climatology", "seasons", "year", "map", "seasons_map"):
        assert (run / f"effects_flip_{figure}.png").stat().st_size > 0
