"""kgcm fit with stream = true: trained block by block, scored on held-out tiles, tiled effects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import kgcm
from kgcm.errors import ConfigError, DataError
from kgcm.synthetic.arctic import simulate_arctic

FAST = {"hidden": 8, "training": {"max_epochs": 2, "progress": False}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 12 x 10 world of 130 days in blocks of 4 x 5 cells (6 tiles) and 40 days."""
    root = tmp_path_factory.mktemp("streamed")
    ds = simulate_arctic(ny=12, nx=10, days=130, seed=3).dataset
    ds["sithick"] = ds["sithick"].where(~((ds.y == ds.y[0]) & (ds.x == ds.x[0])))  # land
    ds["sithick"].attrs["units"] = "m"
    ds.attrs["kgcm_prepare_config"] = "{}"
    path = root / "store.zarr"
    ds.chunk({"time": 40, "y": 4, "x": 5}).to_zarr(path, consolidated=True)
    return path


def _config(store, **settings):
    from kgcm.config import from_dict
    from kgcm.experiments.fit import FitConfig

    return from_dict(FitConfig, {
        "data": str(store), "window": 20, "split": "cell", "covariates": ["zos", "uo", "vo"],
        "stream": True, "test_fraction": 0.34, "estimator": {"name": "crn", "params": FAST},
        **settings,
    })  # fmt: skip


def test_a_streamed_fit_scores_its_held_out_tiles_as_the_saved_model_predicts_them(
    store, tmp_path
) -> None:
    from kgcm.experiments.fit import run_fit
    from kgcm.sequences import to_sequences
    from kgcm.streaming import StreamedUnits

    config = _config(store)
    run = tmp_path / "run"
    logged: list[str] = []
    run_fit(config, run, log=logged.append, allow_weak_overlap=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stream"] is True and not (run / "split.npz").exists()
    assert list(metrics["references"])[:2] == ["crn", "climatology_recent"]  # as in memory
    assert {"persistence", "persistence_anomaly"} <= set(metrics["references"])
    assert metrics["references_not_computed"] == ["linear"]
    # the held-out tiles, cut in memory and presented with the run's design, predicted by the
    # saved model: the same RMSE as the streamed pass
    units = StreamedUnits(store, covariates=("zos", "uo", "vo"), window=20, seed=0)
    _, test = units.hold_out(0.34, seed=0)
    held = {(b.y.start, b.x.start) for b in test.blocks()}
    seqs = to_sequences(xr.open_zarr(store), covariates=("zos", "uo", "vo"), window=20,
                        drop_incomplete=True, before=True)  # fmt: skip
    tile = (seqs.cells // np.array(units.tile)) * np.array(units.tile)
    mine = seqs.subset(np.flatnonzero([tuple(c) in held for c in tile]))
    assert mine.n_units == metrics["n_test_units"] > 0
    from kgcm.bounds import OutcomeTransform
    from kgcm.experiments.outcome import OutcomeDesign

    record = json.loads((run / "design.json").read_text())
    design = OutcomeDesign(OutcomeTransform(**record["transform"]), None, True, "sithick")
    est = kgcm.load(run / "model.kgcm")
    days = np.zeros(0, dtype=np.int64)
    pred = design.outcome_from(est.predict(design.covariates(mine, days).values, mine.T), mine,
                               days)  # fmt: skip
    rmse = np.sqrt(np.mean((pred - mine.Y) ** 2))
    assert metrics["factual_rmse_test"] == pytest.approx(rmse, rel=1e-5)
    persistence = np.sqrt(np.mean((mine.Y_before[:, None] - mine.Y) ** 2))
    assert metrics["references"]["persistence"]["rmse"] == pytest.approx(persistence, rel=1e-9)
    assert any("skill vs recent climatology" in m for m in logged)
    # its effects come tile by tile; the in-memory commands say so
    from kgcm.experiments.fit import run_effect
    from kgcm.experiments.tiled import run_tiled_effect

    summary = run_tiled_effect(run, workers=0, allow_weak_overlap=True, log=lambda m: None)
    effects = xr.open_zarr(summary["effects_store"])["effect"].values
    assert np.isfinite(effects).any()
    with pytest.raises(DataError, match="--tiles"):
        run_effect(run, log=lambda m: None, allow_weak_overlap=True)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"split": "unit"}, "split = 'cell'"),
        ({"climatology": "on"}, "climatology"),
        ({"estimator": {"name": "t-learner"}}, "cannot be fitted from a stream"),
        ({"estimator": {"name": "rmsn", "params": FAST}}, "trains in stages"),
        ({"stride": 10}, "stride >= window"),
        ({"test_fraction": 0.9}, "leaves 1 training tile"),
    ],
)
def test_a_streamed_fit_refuses_what_it_cannot_stream(store, tmp_path, settings, message) -> None:
    from kgcm.experiments.fit import run_fit

    with pytest.raises(ConfigError, match=message):
        run_fit(_config(store, **settings), tmp_path / "run", log=lambda m: None,
                allow_weak_overlap=True)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_streamed_fit_names_a_missing_outcome(store, tmp_path) -> None:
    from kgcm.errors import InputError
    from kgcm.experiments.fit import run_fit

    with pytest.raises(InputError, match="'sit' is not in"):
        run_fit(_config(store, outcome="sit"), tmp_path / "run", log=lambda m: None)


def test_a_streamed_fit_needs_three_tiles_and_says_how_to_get_them(tmp_path) -> None:
    from kgcm.experiments.fit import run_fit

    ds = simulate_arctic(ny=6, nx=6, days=60, seed=3).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.chunk({"time": 30, "y": 6, "x": 3}).to_zarr(tmp_path / "two.zarr", consolidated=True)
    with pytest.raises(ConfigError, match=r"2 spatial tile\(s\).*smaller y/x chunks"):
        run_fit(_config(tmp_path / "two.zarr"), tmp_path / "run", log=lambda m: None,
                allow_weak_overlap=True)  # fmt: skip


def test_without_the_pre_window_state_every_window_is_scored_and_no_persistence(
    store, tmp_path
) -> None:
    from kgcm.experiments.fit import run_fit
    from kgcm.sequences import to_sequences

    run_fit(_config(store, prewindow_state=False), tmp_path / "run", log=lambda m: None,
            allow_weak_overlap=True)  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "persistence" not in metrics["references"]
    every = to_sequences(xr.open_zarr(store), covariates=("zos", "uo", "vo"), window=20,
                         drop_incomplete=True)  # fmt: skip
    before = to_sequences(xr.open_zarr(store), covariates=("zos", "uo", "vo"), window=20,
                          drop_incomplete=True, before=True)  # fmt: skip
    # the first windows (no day before) count too: more units than with the state
    assert metrics["n_train_units"] + metrics["n_test_units"] == every.n_units > before.n_units
