"""GST-UNet beyond the conformance suite: placing units on the grid, the spatial path,
transductive prediction frames, per-pixel donor paths, effect recovery on a small arctic world,
cell-bootstrap intervals and the benchmark's grid index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kgcm
from kgcm import metrics
from kgcm.errors import ConfigError, InputError
from kgcm.estimators.gst_unet import GSTUNet, _donor_paths, _frames, grid_layout
from kgcm.experiments import benchmark as bm
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import ArcticConfig, simulate_arctic

#: a few seconds on one core: 12 x 12 cells, 4 windows of 30 days
FAST = {
    "context": 3,
    "width": 8,
    "n_bootstrap": 0,
    "training": {"max_epochs": 8, "batch_size": 8, "learning_rate": 3e-3, "progress": False},
}
TINY = {
    "context": 2,
    "width": 4,
    "n_bootstrap": 2,
    "training": {"max_epochs": 2, "progress": False},
}


@pytest.fixture(scope="module")
def world():
    """12 x 12 cells, 120 days, 30-day windows, a quarter of the cells held out.

    Without the hidden forcing's confounding: its contemporaneous part cannot be adjusted for
    by G-computation on the observed history (module docstring), and this test is about the
    G-computation chain carrying the treatment's effect to the prediction head.
    """
    sim = simulate_arctic(ny=12, nx=12, days=120, confounding=0.0, seed=0)
    seqs = to_sequences(sim.dataset, window=30)
    train_idx, test_idx = split_units(seqs, test_fraction=0.25, seed=0, by="cell")
    return sim, seqs.subset(train_idx), seqs.subset(test_idx)


@pytest.fixture(scope="module")
def spatial_fit(world):
    _, train, _ = world
    return GSTUNet(seed=0, **FAST).fit(train.Y, train.T, X=train.X_xarray(index=True))


@pytest.fixture(scope="module")
def small():
    """6 x 6 cells, 60 days, 20-day windows (for the slower checks: bootstrap, save/load)."""
    sim = simulate_arctic(ny=6, nx=6, days=60, seed=1)
    return to_sequences(sim.dataset, window=20)


def test_sequence_index_coordinates(small) -> None:
    X = small.X_xarray(index=True)
    np.testing.assert_array_equal(X["cell_y"].values, small.cells[:, 0])
    np.testing.assert_array_equal(X["cell_x"].values, small.cells[:, 1])
    np.testing.assert_array_equal(X["start"].values, small.starts)
    assert "cell_y" not in small.X_xarray().coords  # opt-in: other callers see no change
    layout = grid_layout(X)
    assert layout is not None and layout.spatial
    assert (layout.n_groups, layout.height, layout.width) == (3, 6, 6)


def test_grid_coordinates_switch_the_spatial_path_on(world, spatial_fit) -> None:
    _, train, _ = world
    assert spatial_fit.spatial_ is True
    few = train.subset(np.arange(40))
    pixels = GSTUNet(seed=0, **{**FAST, "training": {"max_epochs": 1, "progress": False}})
    pixels.fit(few.Y, few.T, X=few.X)
    assert pixels.spatial_ is False


def test_neighbours_reach_a_prediction_only_on_the_grid(world, spatial_fit) -> None:
    _, train, _ = world
    X = train.X_xarray(index=True)
    base = spatial_fit.predict(X, train.T)
    # a unit and its eastern neighbour in the same window
    where = np.column_stack([train.cells, train.starts])
    cell = {tuple(int(v) for v in row): i for i, row in enumerate(where)}
    unit, neighbour = next(
        (i, cell[(y, x + 1, s)]) for (y, x, s), i in cell.items() if (y, x + 1, s) in cell
    )
    shifted = X.copy(data=X.values.copy())
    shifted.values[neighbour] += 1.0
    moved = spatial_fit.predict(shifted, train.T)
    assert np.abs(moved[unit] - base[unit]).max() > 1e-6
    # the same change seen as independent pixels leaves the unit alone
    few = train.subset(np.array([unit, neighbour]))
    pixels = GSTUNet(seed=0, **{**FAST, "training": {"max_epochs": 1, "progress": False}})
    pixels.fit(few.Y, few.T, X=few.X)
    before = pixels.predict(few.X, few.T)
    after_x = few.X.copy()
    after_x[1] += 1.0
    np.testing.assert_array_equal(pixels.predict(after_x, few.T)[0], before[0])


def test_prediction_frames_hold_the_training_units(world, spatial_fit) -> None:
    _, train, test = world
    X_train = train.X_xarray(index=True)
    # a few training units asked alone see the same frames as the whole training set
    few = np.arange(0, train.Y.shape[0], 7)
    alone = spatial_fit.predict(train.subset(few).X_xarray(index=True), train.subset(few).T)
    np.testing.assert_allclose(alone, spatial_fit.predict(X_train, train.T)[few], atol=1e-5)
    # held-out cells: frames filled with the training cells differ from query-only frames
    X_test = test.X_xarray(index=True)
    full = spatial_fit.predict(X_test, test.T)
    spatial_fit.transductive = False  # read at prediction: the same weights, query-only frames
    try:
        query_only = spatial_fit.predict(X_test, test.T)
    finally:
        spatial_fit.transductive = True
    assert np.abs(full - query_only).mean() > 1e-3


def test_a_counterfactual_moves_only_the_query_units(world, spatial_fit) -> None:
    _, train, _ = world
    X = train.X_xarray(index=True)
    few = np.arange(0, train.Y.shape[0], 5)
    sub = train.subset(few)
    effect = spatial_fit.effect(sub.X_xarray(index=True), T0=sub.T, T1=1.5 * sub.T)
    # the same as asking about every unit with the path changed on the query units alone
    T1 = train.T.copy()
    T1[few] *= 1.5
    whole = spatial_fit.predict(X, T1) - spatial_fit.predict(X, train.T)
    np.testing.assert_allclose(effect, whole[few], atol=1e-5)
    # and not the same as changing every unit's path (the filled neighbours stay factual)
    field = spatial_fit.predict(X, 1.5 * train.T) - spatial_fit.predict(X, train.T)
    assert np.abs(field[few] - effect).max() > 1e-4


def test_donor_paths_are_drawn_per_pixel() -> None:
    batch, k, h, w = 3, 4, 5, 6
    # every pixel's path is one value over its context; pixels without a unit hold 1000
    values = torch.arange(1.0, 1.0 + batch * h * w).reshape(batch, 1, h, w)
    t = values.expand(batch, k, h, w).clone()
    valid = torch.ones(batch, h, w)
    valid[:, 0, :] = 0.0
    t[:, :, 0, :] = 1000.0
    step = torch.full((batch,), k - 1)
    gen = torch.Generator().manual_seed(0)
    donor = _donor_paths(t, valid, step, offset=0.0, generator=gen)
    assert donor.shape == t.shape
    # each pixel's donor is one pixel's path times a factor in [1/2, 2]
    torch.testing.assert_close(donor, donor[:, :1].expand_as(donor))
    assert float(donor.max()) < 2.0 * batch * h * w + 1e-3  # never a pixel without a unit
    # independent across the pixels of one frame, not one path for the field
    for b in range(batch):
        assert len(torch.unique(donor[b, 0])) > h * w // 2
    # deterministic given the generator; frames with a short context do not donate
    again = _donor_paths(t, valid, step, offset=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(donor, again)
    short = torch.tensor([k - 1, 0, 0])
    only_first = _donor_paths(t, valid, short, offset=0.0, generator=gen)
    ratio = only_first / values[0].max()
    assert float(ratio.max()) <= 2.0 + 1e-5 and float(only_first.min()) >= 0.5 - 1e-5


def test_validation_loss_does_not_reward_flat_heads(world, spatial_fit) -> None:
    # a network whose heads all output the mean: every head misses the observed outcome, so
    # the factual validation loss is the outcome's scaled variance, not the share of head 0
    _, train, _ = world
    grid = grid_layout(train.X_xarray(index=True))
    est = spatial_fit
    y = est.y_scaler_.transform(train.Y)
    frames = _frames(
        grid, est.x_scaler_.transform(train.X), est.t_scaler_.transform(train.T), y, est.context
    )
    flat = est._build()
    torch.nn.init.zeros_(flat.heads[-1].weight)
    torch.nn.init.zeros_(flat.heads[-1].bias)
    with torch.no_grad():
        loss = float(est._val_fn(flat)(frames))
    assert loss == pytest.approx(float(np.mean(y**2)), rel=0.05)


def test_default_context_covers_the_response() -> None:
    assert GSTUNet().context >= ArcticConfig().response_length


def test_the_arctic_benchmark_does_not_cap_its_epochs() -> None:
    import tomllib
    from pathlib import Path

    config = Path(__file__).parents[1] / "configs" / "benchmark-arctic.toml"
    entries = tomllib.loads(config.read_text())["estimators"]
    (gst,) = [e for e in entries if e["name"] == "gst-unet"]
    assert "max_epochs" not in gst.get("params", {}).get("training", {})


def test_effect_recovery_beats_zero_effect(world, spatial_fit) -> None:
    sim, _, test = world
    T1 = 1.5 * test.T
    truth = sim.window_effects(T1, test.cells, test.starts, test.window)
    effect = spatial_fit.effect(test.X_xarray(index=True), T0=test.T, T1=T1)
    zero = metrics.pehe(truth, np.zeros_like(truth))
    assert metrics.pehe(truth, effect) < 0.9 * zero
    assert np.sign(effect.mean()) == np.sign(truth.mean())


def test_grid_fit_needs_the_grid_at_prediction(world, spatial_fit) -> None:
    _, _, test = world
    with pytest.raises(InputError, match=r"fitted on a grid.*X_xarray\(index=True\)"):
        spatial_fit.predict(test.X, test.T)


def test_layout_errors_name_the_fix(small) -> None:
    X = small.X_xarray(index=True)
    est = GSTUNet(**TINY)
    with pytest.raises(InputError, match=r"units 0 and 1 both sit at cell .*'start' coordinate"):
        est.fit(small.Y, small.T, X=X.drop_vars("start"))
    half = X.assign_coords(cell_y=("unit", X["cell_y"].values + 0.5))
    with pytest.raises(InputError, match=r"'cell_y' must hold whole numbers .*0.5"):
        est.fit(small.Y, small.T, X=half)
    negative = X.assign_coords(cell_x=("unit", X["cell_x"].values - 1))
    with pytest.raises(InputError, match=r"'cell_x' must hold indices >= 0; got -1"):
        est.fit(small.Y, small.T, X=negative)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_bootstrap": 1}, r"n_bootstrap must be 0 .* or an integer >= 2.*got 1"),
        ({"context": 0}, r"context must be an integer >= 1; got 0"),
        ({"width": 2.5}, r"width must be an integer >= 1; got 2.5"),
        ({"cell_dropout": 1.0}, r"cell_dropout must be a number in \[0, 1\); got 1.0"),
        ({"transductive": "yes"}, r"transductive must be true or false; got 'yes'"),
    ],
)
def test_bad_parameters_are_refused(params, message, panel) -> None:
    with pytest.raises(ConfigError, match=message):
        GSTUNet(**{**TINY, **params}).fit(panel["Y"], panel["T"], X=panel["X"])


def test_bootstrap_intervals_seed_and_save_on_the_grid(small, tmp_path) -> None:
    X = small.X_xarray(index=True)
    a = GSTUNet(seed=3, **TINY).fit(small.Y, small.T, X=X)
    b = GSTUNet(seed=3, **TINY).fit(small.Y, small.T, X=X)
    T1 = 1.5 * small.T
    effect, lower, upper = a.effect_with_interval(X, T0=small.T, T1=T1, alpha=0.1)
    assert effect.shape == lower.shape == upper.shape == small.Y.shape
    assert np.all(lower <= effect) and np.all(effect <= upper) and np.any(lower < upper)
    assert len(a.models_) == 3 and a.spatial_
    np.testing.assert_array_equal(b.effect(X, T0=small.T, T1=T1), a.effect(X, T0=small.T, T1=T1))
    a.save(tmp_path / "gst.kgcm")
    back = kgcm.load(tmp_path / "gst.kgcm")
    assert back.spatial_
    np.testing.assert_allclose(back.predict(X, small.T), a.predict(X, small.T))
    np.testing.assert_allclose(
        back.effect_interval(X, T0=small.T, T1=T1)[0], a.effect_interval(X, T0=small.T, T1=T1)[0]
    )
    point = GSTUNet(seed=3, **{**TINY, "n_bootstrap": 0}).fit(small.Y, small.T, X=X)
    assert a.gives_intervals() and not point.gives_intervals()
    with pytest.raises(NotImplementedError, match=r"n_bootstrap=0, so it has no intervals"):
        point.effect_interval(X, T0=small.T, T1=T1)


def test_benchmark_passes_the_grid(tmp_path) -> None:
    spec = bm.DatasetSpec(
        name="arctic", kind="arctic", params={"ny": 6, "nx": 6, "days": 60, "window": 20}
    )
    task = bm.make_task(spec, seed=0)
    for X in (task.X_train, task.X_test):
        assert {"cell_y", "cell_x", "start"} <= set(X.coords)
    row = bm.run_cell(spec, bm.EstimatorSpec(name="gst-unet", params=TINY), 0, tau=5, alpha=0.1)
    assert row["status"] == "ok", row.get("traceback", row["status"])
    assert np.isfinite(row["pehe"]) and 0.0 <= row["coverage"] <= 1.0
    # point fits (no bootstrap) are scored without coverage, not recorded as errors
    point = bm.EstimatorSpec(name="gst-unet", params={**TINY, "n_bootstrap": 0})
    row = bm.run_cell(spec, point, 0, tau=5, alpha=0.1)
    assert row["status"] == "ok", row.get("traceback", row["status"])
    assert np.isfinite(row["pehe"]) and "coverage" not in row


def test_a_model_file_without_training_units_is_refused_clearly() -> None:
    from kgcm.errors import DataError

    est = kgcm.make_estimator("gst-unet")
    with pytest.raises(DataError, match="saved before prediction frames carried"):
        est._set_state({"spatial": True})
