"""The shipped "bring your own data" example runs end to end from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr
from typer.testing import CliRunner

from kgcm.cli import app

EXAMPLE = Path(__file__).parents[1] / "examples" / "barents-kara"


def test_barents_kara_chain(tmp_path) -> None:
    runner = CliRunner()
    store = tmp_path / "store.zarr"
    res = runner.invoke(app, ["prepare", "-c", str(EXAMPLE / "prepare.toml"), "--out", str(store),
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(store)
    assert ds.sizes["time"] == 14610
    assert str(ds["time"].values[0])[:10] == "1979-01-01"
    assert str(ds["time"].values[-1])[:10] == "2018-12-31"
    assert float(abs(ds["treatment"] - ds["LW_down"]).max()) == 0.0
    run = tmp_path / "run"
    fast = ["--set", f"data='{store}'", "--set", "estimator.params.hidden=8",
            "--set", "estimator.params.latent_dim=4",
            "--set", "estimator.params.training.max_epochs=2"]  # fmt: skip
    # longwave radiation is ~96% predictable from its confounders and the season (held-out R²
    # 0.963 > 0.95): kgcm fit refuses it unless told to run anyway, and records the warning
    res = runner.invoke(app, ["fit", "-c", str(EXAMPLE / "fit.toml"), "-o", str(run), *fast])
    assert res.exit_code == 2
    assert "the treatment is nearly a function of the covariates" in res.output
    res = runner.invoke(app, ["fit", "-c", str(EXAMPLE / "fit.toml"), "-o", str(run), *fast,
                              "--allow-weak-overlap"])  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overlap"]["ok"] is False
    # 30-day windows every 5 days; the first has no day before it; training windows end
    # before the held-out period (the latest 20% of window starts)
    n_units = (14610 - 30) // 5 + 1 - 1
    assert metrics["n_test_units"] == round(0.2 * (n_units + 1))
    assert metrics["n_train_units"] == n_units - metrics["n_test_units"] - 5
    assert set(metrics["references"]) >= {"climatology_recent", "climatology_full",
                                          "persistence", "linear"}  # fmt: skip
    assert "held-out factual RMSE" in res.output
    assert ("does not beat" in res.output) == bool(metrics["not_beaten"])
    assert (run / "fit_references.png").stat().st_size > 0
    res = runner.invoke(app, ["effect", str(run), "--shift", "-400", "--allow-weak-overlap"])
    assert res.exit_code == 0, res.output
    eff = xr.open_dataset(run / "effects.nc")
    assert eff["effect"].dims == ("time",)
    assert eff["effect"].attrs["units"] == "km2"
    assert {"effect_lower", "effect_upper", "sea_ice_extent_counterfactual"} <= set(eff.data_vars)
    for name in ("sea_ice_extent_counterfactual",):
        assert float(eff[name].min()) >= 0.0  # extent stays physical under any shift
    assert float((eff["sea_ice_extent"] + eff["effect_lower"]).min()) >= 0.0
    summary = json.loads((run / "effects.json").read_text())
    assert summary["overlap"]["ok"] is False
    assert summary["scenario"] == "T1 = T0 + -400"
    assert summary["expected_sign"] == "negative"
    assert set(summary["seasons"]) == {"DJF", "MAM", "JJA", "SON"}
    for figure in ("climatology", "seasons", "year"):
        assert (run / f"effects_{figure}.png").stat().st_size > 0


def test_fit_refuses_cell_split_on_a_series(tmp_path) -> None:
    runner = CliRunner()
    store = tmp_path / "store.zarr"
    runner.invoke(app, ["prepare", "-c", str(EXAMPLE / "prepare.toml"), "--out", str(store),
                        "--no-progress"])  # fmt: skip
    res = runner.invoke(app, ["fit", "-c", str(EXAMPLE / "fit.toml"), "-o", str(tmp_path / "r"),
                              "--set", f"data='{store}'", "--set", "split=cell"])  # fmt: skip
    assert res.exit_code == 2
    assert "use split = 'time'" in res.output
