"""Seasonal and regional effect maps (kgcm effect) and the run report (kgcm report), on a tiny
simulated world large enough to reach several seas."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from kgcm.cli import app
from kgcm.config import from_dict
from kgcm.experiments.effect_maps import SERIES_NOTE, seasonal_region_maps, write_effect_maps
from kgcm.experiments.fit import FitConfig, run_effect, run_fit
from kgcm.regions import REGIONS, assign_regions, load_regions
from kgcm.synthetic.arctic import simulate_arctic

QUIET = {"log": lambda m: None}
FAST = {
    "hidden": 8,
    "latent_dim": 4,
    "n_draws": 4,
    "training": {"max_epochs": 1, "progress": False},
}
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fit run and its effects on a 6x6 world of 450-km cells (pole to about 72°N), winter
    and spring only."""
    root = tmp_path_factory.mktemp("maps")
    ds = simulate_arctic(seed=0, ny=6, nx=6, days=100, dx_km=450.0).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.to_zarr(root / "store.zarr", consolidated=True)
    config = from_dict(FitConfig, {
        "data": str(root / "store.zarr"), "window": 20, "split": "cell",
        "covariates": ["zos", "uo", "vo"], "test_fraction": 0.25, "bounds": "none",
        "estimator": {"name": "kgcm-vae", "params": FAST},
    })  # fmt: skip
    run_fit(config, root / "run", allow_weak_overlap=True, **QUIET)
    run_effect(root / "run", allow_weak_overlap=True, **QUIET)
    return root / "run"


# --- regions ----------------------------------------------------------------------------------


def test_known_points_fall_in_their_seas() -> None:
    points = {  # (lat, lon): sea
        (75.0, 40.0): "Barents", (75.0, 75.0): "Kara", (76.0, 125.0): "Laptev",
        (74.0, 160.0): "East Siberian", (72.0, -170.0): "Chukchi", (70.0, 178.0): "East Siberian",
        (73.0, -140.0): "Beaufort", (88.0, 0.0): "Central Arctic", (85.0, 170.0): "Central Arctic",
        (90.0, 0.0): "Central Arctic", (72.0, -10.0): None, (60.0, -30.0): None,
        (np.nan, 0.0): None,
    }  # fmt: skip
    lat = np.array([k[0] for k in points])
    lon = np.array([k[1] for k in points])
    got = [REGIONS[i] if i >= 0 else None for i in assign_regions(lat, lon)]
    assert got == list(points.values())
    # longitudes past 180 are the same meridians
    assert assign_regions(np.array([72.0]), np.array([190.0]))[0] == REGIONS.index("Chukchi")


def test_region_outlines_ship_with_the_package() -> None:
    regions = load_regions()
    assert [r.name for r in regions] == list(REGIONS)
    for r in regions:  # closed, projected, finite rings
        assert np.isfinite(r.x).all() and (r.x[0], r.y[0]) == (r.x[-1], r.y[-1])
    with pytest.raises(Exception, match="one shape"):
        assign_regions(np.zeros(2), np.zeros(3))


# --- maps of a series -------------------------------------------------------------------------


def test_series_gets_seasonal_means_and_no_region_table(tmp_path) -> None:
    time = pd.date_range("2019-12-01", periods=365, freq="D")
    effect = np.where(time.month.isin([6, 7, 8]), 2.0, 1.0)
    effect[0] = np.nan  # a day without an estimate is left out
    ds = xr.Dataset(
        {"effect": ("time", effect, {"units": "km2", "outcome": "extent"}),
         "effect_lower": ("time", effect - 1.0), "effect_upper": ("time", effect + 1.0),
         "extent": ("time", np.ones(365))},
        coords={"time": time},
    )  # fmt: skip
    maps = seasonal_region_maps(ds)
    assert maps["effect_mean"].dims == ("season",)
    np.testing.assert_allclose(maps["effect_mean"].values, [1.0, 1.0, 2.0, 1.0])
    np.testing.assert_allclose(maps["effect_lower_mean"].values, [0.0, 0.0, 1.0, 0.0])
    assert maps["n_days"].sel(season="DJF") == 31 + 31 + 29 - 1  # Dec 2019 to Feb 2020
    assert "region_effect" not in maps and maps.attrs["regions"] == SERIES_NOTE
    lines: list[str] = []
    write_effect_maps(ds, tmp_path / "effects.nc", outcome="extent", title="t", log=lines.append)
    assert {p.name for p in tmp_path.iterdir()} == {"effects_maps.nc"}
    assert any("regions skipped: the effects are a single series" in m for m in lines)


# --- maps of a grid through kgcm effect ----------------------------------------------------------


def test_effect_writes_cf_maps_with_the_seas(run) -> None:
    effects = xr.open_dataset(run / "effects.nc")
    maps = xr.open_dataset(run / "effects_maps.nc")
    assert maps.attrs["Conventions"] == "CF-1.8"
    assert "approximate" in maps.attrs["regions"]
    assert maps["effect_mean"].dims == ("season", "y", "x")
    assert list(maps["season"].values) == ["DJF", "MAM", "JJA", "SON"]
    for name in ("effect_mean", "effect_lower_mean", "effect_upper_mean"):
        assert maps[name].attrs["units"] == "m"
        assert maps[name].attrs["cell_methods"].startswith("time: mean")
        assert {"lat", "lon"} <= set(maps[name].coords)  # CF "coordinates" on disk
    assert maps["region"].attrs["standard_name"] == "region"
    assert list(maps["region"].values) == list(REGIONS)
    assert maps["region_effect"].dims == ("season", "region")
    meanings = maps["cell_region"].attrs["flag_meanings"].split()
    assert meanings[0] == "none" and meanings[-1] == "Central_Arctic"
    assert list(maps["cell_region"].attrs["flag_values"]) == list(range(-1, len(REGIONS)))

    # known cells: the cells at the pole are Central Arctic; every cell's sea is the one of its
    # own coordinates; this world reaches several seas
    cell_region = maps["cell_region"].values
    assert set(cell_region[2:4, 2:4].ravel()) == {REGIONS.index("Central Arctic")}
    np.testing.assert_array_equal(
        cell_region, assign_regions(effects["lat"].values, effects["lon"].values)
    )
    assert len({int(v) for v in cell_region.ravel() if v >= 0}) >= 4

    # the table is the mean over the sea's cell-days of the season
    season = effects["time"].dt.month.isin([12, 1, 2]).values
    for k, name in enumerate(REGIONS):
        cells = cell_region == k
        values = effects["effect"].values[season][:, cells]
        expected = np.nanmean(values) if np.isfinite(values).any() else np.nan
        got = float(maps["region_effect"].sel(season="DJF", region=name))
        np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)
        assert int(maps["region_n_cells"].sel(region=name)) == int(cells.sum())
    # no day of summer: the maps say so with NaN, not zero
    assert np.isnan(maps["effect_mean"].sel(season="JJA")).all()

    table = pd.read_csv(run / "effects_regions.csv")
    assert list(table.columns) == ["season", "region", "n_cells", "mean_effect", "mean_lower",
                                   "mean_upper"]  # fmt: skip
    assert len(table) == 4 * len(REGIONS)
    for figure in ("effects_seasons_map.png", "effects_regions.png"):
        assert (run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (run / figure).stat().st_size > 10_000
    effects.close()
    maps.close()


# --- the report ---------------------------------------------------------------------------------


def _report(run):
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return (run / "report.html").read_text(), (run / "report.md").read_text()


def test_report_is_self_contained_and_names_what_was_not_run(run) -> None:
    page, markdown = _report(run)
    for section in ("Provenance", "Treatment", "Estimand and covariates", "Config",
                    "Overlap diagnostic", "Metrics and references", "Effects",
                    "Seasonal and regional maps", "Dose-response", "Refutations",
                    "Interval calibration"):  # fmt: skip
        assert f">{section}</h2>" in page and f"## {section}" in markdown
    # nothing loaded from anywhere: no scripts, style sheets, fonts or remote sources
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    pictures = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert pictures and all(p.startswith("data:image/png;base64,") for p in pictures)
    assert "effects_seasons_map.png" in markdown and "effects_regions.png" in markdown
    # the parts not run are stated with the command that adds them
    assert "not run: `kgcm refute RUN` adds it." in markdown
    assert "not run: `kgcm dose-response RUN` adds it." in markdown
    # provenance: the checksums the run recorded, and the simulated store
    import json

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["files"]["model.kgcm"]["sha256"] in page
    assert "kgcm.synthetic.arctic" in page and "Central Arctic" in page


def test_report_of_a_folder_that_is_no_run(tmp_path) -> None:
    (tmp_path / "config.toml").write_text("x = 1\n")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a kgcm run folder" in result.output


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_in_headless_chromium(run, tmp_path) -> None:
    browser = _chromium()
    if browser is None:
        message = "headless Chromium is needed (Debian: apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    _report(run)
    shot = tmp_path / "report.png"
    width, height = 1200, 1800
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={width},{height}", f"--screenshot={shot}",
         (run / "report.html").resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    from matplotlib.image import imread

    image = imread(shot)
    assert image.shape[:2] == (height, width)
    rgb = np.round(image[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    not_white = (rgb < 245).any(axis=1).mean()
    colours = len(np.unique(rgb, axis=0))
    # the page's text, tables and header rule on white: far from blank, many colours
    assert 0.03 < not_white < 0.9, not_white
    assert colours > 50, colours
