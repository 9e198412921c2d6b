"""How an arctic world is evaluated: in-support scenarios, block and time splits, burn-in."""

from __future__ import annotations

import numpy as np
import pytest

from kgcm.errors import ConfigError, InputError
from kgcm.experiments import benchmark as bm
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import ArcticConfig, simulate_arctic

SMALL = {"ny": 8, "nx": 8, "days": 60}


def _task(**params):
    return bm.make_task(bm.DatasetSpec("a", "arctic", {**SMALL, **params}), 0)


def test_burn_in_keeps_the_factual_path_and_is_not_scored():
    task = _task(burn_in=9)
    assert task.score_from == 9
    np.testing.assert_array_equal(task.T1_test[:, :9], task.T0_test[:, :9])
    np.testing.assert_allclose(task.T1_test[:, 9:], 1.5 * task.T0_test[:, 9:])
    np.testing.assert_array_equal(task.true_effect[:, :9], 0.0)  # nothing changed yet
    assert np.abs(task.true_effect[:, 9:]).mean() > 0
    row = bm.run_cell(
        bm.DatasetSpec("a", "arctic", {**SMALL, "burn_in": 9}),
        bm.EstimatorSpec("zero-effect"),
        0,
        tau=5,
        alpha=0.05,
    )
    # zero-effect's PEHE is the RMS of the scored truth only
    expected = float(np.sqrt(np.mean(task.true_effect[:, 9:] ** 2)))
    assert row["pehe"] == pytest.approx(expected)


def test_in_support_shift_is_in_units_of_the_treatment_sd():
    task = _task(shift_sd=0.25)
    sim = simulate_arctic(ArcticConfig(**SMALL, seed=0))
    sd = float(to_sequences(sim.dataset, window=30).T.std())
    np.testing.assert_allclose(task.T1_test - task.T0_test, 0.25 * sd)


def test_block_split_holds_out_whole_tiles():
    sim = simulate_arctic(ArcticConfig(ny=12, nx=12, days=60, seed=0))
    seqs = to_sequences(sim.dataset, window=30)
    tr, te = split_units(seqs, test_fraction=0.25, seed=3, by="block", block=4)
    tile = lambda idx: {tuple(c) for c in seqs.cells[idx] // 4}  # noqa: E731
    assert not tile(tr) & tile(te)  # no tile on both sides
    assert 0.1 <= te.size / seqs.n_units <= 0.45  # about a quarter, in whole 4x4 tiles
    again = split_units(seqs, test_fraction=0.25, seed=3, by="block", block=4)
    np.testing.assert_array_equal(again[1], te)
    with pytest.raises(InputError, match="one tile"):
        split_units(seqs, test_fraction=0.25, seed=3, by="block", block=12)


def test_time_split_task_trains_on_earlier_windows():
    task = _task(split="time", days=120)
    assert task.X_train.coords["start"].values.max() < task.X_test.coords["start"].values.min()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"scale": 1.2, "shift_sd": 0.1}, "one scenario"),
        ({"split": "region"}, "split must be 'cell', 'block' or 'time'"),
        ({"burn_in": 30}, r"burn_in must be an integer in \[0, window\)"),
    ],
)
def test_bad_designs_are_refused(params, match):
    with pytest.raises(ConfigError, match=match):
        _task(**params)
