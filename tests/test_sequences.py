"""Sequences: cutting datasets into units and mapping results back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kgcm.errors import InputError
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import simulate_arctic


@pytest.fixture(scope="module")
def ds():
    return simulate_arctic(ny=4, nx=3, days=70, seed=0).dataset


def test_shapes_and_names(ds) -> None:
    s = to_sequences(ds, window=30)
    assert s.Y.shape == (4 * 3 * 2, 30)  # 70 days -> two full windows per cell
    assert s.X.shape == (24, 30, 6)
    assert s.feature_names == ("zos", "uo", "vo", "lat", "doy_sin", "doy_cos")
    assert s.X_xarray().coords["feature"].values.tolist() == list(s.feature_names)


def test_units_hold_the_right_values(ds) -> None:
    s = to_sequences(ds, window=30, stride=10)
    i = 7
    iy, ix = s.cells[i]
    t = s.starts[i]
    np.testing.assert_allclose(s.Y[i], ds["sithick"].values[t : t + 30, iy, ix])
    np.testing.assert_allclose(s.T[i], ds["treatment"].values[t : t + 30, iy, ix])
    np.testing.assert_allclose(s.X[i, :, 1], ds["uo"].values[t : t + 30, iy, ix])
    np.testing.assert_allclose(s.X[i, :, 3], ds["lat"].values[iy, ix])


def test_to_grid_round_trip(ds) -> None:
    s = to_sequences(ds, window=30)
    back = s.to_grid(s.Y, "sithick")
    assert back.dims == ("time", "y", "x")
    np.testing.assert_allclose(back.values[:60], ds["sithick"].values[:60])
    assert np.isnan(back.values[60:]).all()  # the last 10 days belong to no full window
    assert "lat" in back.coords


def test_series_without_space() -> None:
    time = pd.date_range("2020-01-01", periods=95)
    series = xr.Dataset(
        {
            name: ("time", np.arange(95.0) + k)
            for k, name in enumerate(("sithick", "treatment", "zos"))
        },
        coords={"time": time},
    )
    s = to_sequences(series, covariates=("zos",), static=(), window=30)
    assert s.Y.shape == (3, 30) and s.cells.shape == (3, 0)
    np.testing.assert_allclose(s.to_grid(s.T, "t").values[:90], np.arange(90.0) + 1)
    with pytest.raises(InputError, match="split by='unit'"):
        split_units(s, test_fraction=0.3, seed=0)
    train, test = split_units(s, test_fraction=0.34, seed=0, by="unit")
    assert len(test) == 1 and len(train) == 2


def test_split_by_cell_holds_out_whole_cells(ds) -> None:
    s = to_sequences(ds, window=30)
    train, test = split_units(s, test_fraction=0.25, seed=1)
    train_cells = {tuple(c) for c in s.cells[train]}
    test_cells = {tuple(c) for c in s.cells[test]}
    assert train_cells.isdisjoint(test_cells) and len(test_cells) == 3
    np.testing.assert_array_equal(split_units(s, test_fraction=0.25, seed=1)[1], test)


def test_errors(ds) -> None:
    with pytest.raises(InputError, match="Did you mean 'zos'"):
        to_sequences(ds, covariates=("zoss",))
    with pytest.raises(InputError, match="keep it out of X"):
        to_sequences(ds, covariates=("zos", "treatment"))
    with pytest.raises(InputError, match="fewer than window=100"):
        to_sequences(ds, window=100)
    holes = ds.copy(deep=True)
    holes["zos"].values[:, 0, 0] = np.nan  # a land cell
    with pytest.raises(InputError, match="2 of 24 units hold NaN"):
        to_sequences(holes)
    kept = to_sequences(holes, drop_incomplete=True)
    assert kept.n_units == 22 and not ((kept.cells == [0, 0]).all(axis=1)).any()


def test_pre_window_state_is_the_day_before(ds) -> None:
    s = to_sequences(ds, window=20, stride=10, before=True, drop_incomplete=True)
    assert s.starts.min() == 10  # windows starting on day 0 have no day before
    i = 5
    cell = tuple(s.cells[i])
    expected = ds["sithick"].transpose("time", "y", "x").values[(s.starts[i] - 1, *cell)]
    assert s.Y_before[i] == pytest.approx(float(expected))
    assert s.subset(np.array([i])).Y_before[0] == s.Y_before[i]


def test_to_grid_averages_overlapping_windows_after_the_burn_in(ds) -> None:
    s = to_sequences(ds, window=20, stride=5)
    position = np.broadcast_to(np.arange(20.0), s.Y.shape)
    last = s.to_grid(position, "p").isel(y=0, x=0).values
    mean = s.to_grid(position, "p", combine="mean").isel(y=0, x=0).values
    late = s.to_grid(position, "p", combine="mean", min_position=10).isel(y=0, x=0).values
    # day 22 sits at positions 17, 12, 7, 2 of the windows starting on days 5, 10, 15, 20
    assert last[22] == 2.0
    assert mean[22] == pytest.approx((17 + 12 + 7 + 2) / 4)
    assert late[22] == pytest.approx((17 + 12) / 2)
    assert np.isnan(late[:10]).all() and np.isfinite(late[10:65]).all()
    with pytest.raises(InputError, match="min_position must be in"):
        s.to_grid(position, "p", combine="mean", min_position=20)


def test_time_split_keeps_training_windows_out_of_the_held_out_period(ds) -> None:
    s = to_sequences(ds, window=20, stride=5)
    train, test = split_units(s, test_fraction=0.3, seed=0, by="time")
    first_test = s.starts[test].min()
    assert (s.starts[train] + 20 <= first_test).all()
    assert not np.intersect1d(train, test).size


def test_covariates_the_treatment_is_computed_from_are_refused(ds) -> None:
    known = ds.copy()
    known["treatment"] = ds["treatment"].assign_attrs(computed_from="uo vo zos")
    with pytest.raises(InputError, match=r"covariates \['zos', 'uo'\] are fields the treatment"):
        to_sequences(known, covariates=("zos", "uo"), window=30)
    # confounders are fine; without the attribute nothing is known, so nothing is refused
    assert to_sequences(known, covariates=(), window=30).X.shape[-1] == 3  # lat + calendar
    assert to_sequences(ds, covariates=("zos",), window=30).feature_names[0] == "zos"
