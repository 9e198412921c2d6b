"""The CLI refuses weak overlap with the check's message, and --allow-weak-overlap runs anyway and
writes the warning into the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr
from typer.testing import CliRunner

from kgcm.cli import app
from kgcm.config import from_dict
from kgcm.prepare import PrepareConfig, run_prepare
from kgcm.synthetic.products import write_product

TINY = [
    "--set", "arctic.ny=6", "--set", "arctic.nx=6", "--set", "arctic.days=90",
    "--set", "estimator.params.hidden=8", "--set", "estimator.params.n_draws=5",
    "--set", "estimator.params.training.max_epochs=2",
]  # fmt: skip
FAR = ["--set", "scenario.value=6"]  # T1 = 6 x T0: far outside the observed support

runner = CliRunner()


def test_demo_refuses_a_scenario_far_outside_the_data(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY, *FAR])
    assert result.exit_code == 2
    assert "far outside the observed support" in result.output
    assert "--allow-weak-overlap" in result.output
    assert not (out / "model.kgcm").exists()  # refused before fitting


def test_demo_allow_weak_overlap_writes_the_warning(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY, *FAR, "--allow-weak-overlap"])
    assert result.exit_code == 0, result.output
    assert "warning: weak overlap" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["overlap"]
    assert entry["ok"] is False and entry["shift_sd"] > entry["shift_max"]
    assert "far outside the observed support" in entry["message"]
    assert json.loads((out / "run.json").read_text())["overlap"] == entry
    with xr.open_dataset(out / "effects.nc") as ds:
        assert ds.attrs["overlap_warning"] == entry["message"]


def test_demo_default_scenario_passes_and_records_the_check(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "metrics.json").read_text())["overlap"]
    assert entry["ok"] is True and entry["message"].startswith("overlap ok")
    assert 0 < entry["r2"] < entry["r2_max"] and 0 < entry["shift_sd"] < entry["shift_max"]
    with xr.open_dataset(out / "effects.nc") as ds:
        assert "overlap_warning" not in ds.attrs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A prepared store whose treatment is computed from zos, uo and vo (kgcm prepare's
    velocity modulation), with those fields as covariates and without the ``computed_from``
    attribute that would let ``to_sequences`` refuse them by name (a store written by another
    tool): the overlap check must catch it from the data alone."""
    root = tmp_path_factory.mktemp("overlap-store")
    write_product("cmems-glorys12", root / "fine", ny=16, nx=32, days=40, days_per_file=20,
                  variables=("sithick",))  # fmt: skip
    write_product("cmems-glorys12", root / "coarse", ny=10, nx=20, days=40, days_per_file=40,
                  variables=("zos", "uo", "vo"), packed=False)  # fmt: skip
    cfg = from_dict(PrepareConfig, {
        "output": str(root / "store.zarr"),
        "sources": [
            {"name": "ice", "paths": str(root / "fine" / "*.nc"), "product": "cmems-glorys12"},
            {"name": "ocean", "paths": str(root / "coarse" / "*.nc")},
        ],
        "grid": {"kind": "source", "source": "ice"},
    })  # fmt: skip
    path = run_prepare(cfg, log=lambda m: None, progress=False).path
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    del group["treatment"].attrs["computed_from"]
    zarr.consolidate_metadata(str(path))
    return path


def _fit_config(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "fit.toml"
    path.write_text(
        f'data = "{store}"\nwindow = 20\ncovariates = ["zos", "uo", "vo"]\n'
        '[estimator]\nname = "kgcm-vae"\n'
        "[estimator.params]\nhidden = 8\nlatent_dim = 4\nn_draws = 5\n"
        "[estimator.params.training]\nmax_epochs = 2\nprogress = false\n"
    )
    return path


def test_fit_refuses_a_treatment_computed_from_the_covariates(tmp_path, store) -> None:
    config = _fit_config(tmp_path, store)
    result = runner.invoke(app, ["fit", "-c", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "the treatment is nearly a function of the covariates" in result.output
    assert "--allow-weak-overlap" in result.output
    assert not (tmp_path / "run" / "model.kgcm").exists()


def test_fit_and_effect_with_allow_weak_overlap_record_the_warning(tmp_path, store) -> None:
    config, run = _fit_config(tmp_path, store), tmp_path / "run"
    result = runner.invoke(app, ["fit", "-c", str(config), "-o", str(run),
                                 "--allow-weak-overlap"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: weak overlap" in result.output
    fit_entry = json.loads((run / "metrics.json").read_text())["overlap"]
    assert fit_entry["ok"] is False and fit_entry["r2"] > fit_entry["r2_max"]
    assert fit_entry["shift_sd"] is None  # fit has no scenario

    refused = runner.invoke(app, ["effect", str(run), "--scale", "1.5"])
    assert refused.exit_code == 2
    assert "nearly a function of the covariates" in refused.output
    assert "far outside the observed support" in refused.output
    assert not (run / "effects.nc").exists()

    result = runner.invoke(app, ["effect", str(run), "--scale", "1.5", "--allow-weak-overlap"])
    assert result.exit_code == 0, result.output
    entry = json.loads((run / "effects.json").read_text())["overlap"]
    assert entry["ok"] is False and entry["shift_sd"] > entry["shift_max"]
    assert entry["r2"] == fit_entry["r2"]  # same data, same seed
    with xr.open_dataset(run / "effects.nc") as ds:
        assert ds.attrs["overlap_warning"] == entry["message"]
