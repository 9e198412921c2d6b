"""The command line: `kgcm demo` end to end in a tiny setting, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from typer.testing import CliRunner

from kgcm.cli import app
from kgcm.config import load_config
from kgcm.experiments.demo import DemoConfig

TINY = [
    "--set", "arctic.ny=6", "--set", "arctic.nx=6", "--set", "arctic.days=90",
    "--set", "estimator.params.hidden=8", "--set", "estimator.params.n_draws=5",
    "--set", "estimator.params.training.max_epochs=2",
]  # fmt: skip

runner = CliRunner()


def test_demo_tiny_writes_every_output(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "PEHE" in result.output and "zero-effect" in result.output
    expected = {"effects.nc", "effect_map.png", "effect_timeseries.png", "metrics.json",
                "config.toml", "model.kgcm", "run.json", "report.html", "report.md"}  # fmt: skip
    assert expected <= {p.name for p in out.iterdir()}
    # the report is part of the demo's transaction: its manifest covers it
    from kgcm._io import verify_folder

    assert "report.html" in verify_folder(out, "demo")["files"]
    assert f"kgcm report: {out.name}" in (out / "report.html").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left"

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("pehe", "ate_error", "factual_rmse", "coverage", "interval_width"):
        assert np.isfinite(metrics["kgcm-vae"][key])
    truth = metrics["truth"]
    assert metrics["zero-effect"]["pehe"] == __import__("pytest").approx(truth["effect_rms"])

    ds = xr.open_dataset(out / "effects.nc")
    assert ds["effect"].dims == ("time", "y", "x")
    assert ds["effect"].attrs["units"] == "m" and ds.attrs["Conventions"].startswith("CF")
    assert {"effect_lower", "effect_upper", "true_effect", "heldout", "lat", "lon"} <= set(
        ds.variables
    )
    # the share of the windows covering a step that were held out: whole cells here
    held = ds["heldout"].isel(time=0)
    assert int(held.sum()) == 9  # 25% of 36 cells
    assert bool((ds["heldout"] == held).all())
    ds.close()

    cfg = load_config(DemoConfig, out / "config.toml")
    assert cfg.arctic.ny == 6 and cfg.seed == 0
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and "fit" in run["seconds"]
    # one run.json layout for every command (kgcm.experiments.outputs)
    assert run["command"] == "demo" and run["code_revision"] and run["torch"]
    assert "effects.nc" in run["files"] and run["overlap"]["ok"] in (True, False)

    import kgcm

    model = kgcm.load(out / "model.kgcm")
    assert model.feature_names_in_ == ("zos", "uo", "vo", "lat", "doy_sin", "doy_cos")


def test_demo_same_seed_same_table(tmp_path) -> None:
    a = runner.invoke(app, ["demo", "--out", str(tmp_path / "a"), *TINY])
    b = runner.invoke(app, ["demo", "--out", str(tmp_path / "b"), *TINY])
    assert a.exit_code == b.exit_code == 0
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert ma == mb


def test_bad_config_key_exits_with_message(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--set", "arctic.nyy=3"])
    assert result.exit_code == 2
    assert "Did you mean 'ny'" in result.output


def test_unknown_estimator_param(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path), "--set", "estimator.params.hiden=3"]
    )
    assert result.exit_code == 2
    assert "Did you mean 'hidden'" in result.output


def test_estimators_and_simulate(tmp_path) -> None:
    result = runner.invoke(app, ["estimators"])
    assert result.exit_code == 0 and "kgcm-vae" in result.output
    path = tmp_path / "world.nc"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(path),
            "--set",
            "arctic.ny=4",
            "--set",
            "arctic.nx=4",
            "--set",
            "arctic.days=20",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = xr.open_dataset(path)
    assert ds["sithick"].shape == (20, 4, 4)
    ds.close()
