"""IHDP, the semi-synthetic static benchmark (Hill 2011, NPCI setting "A").

The 10 replications distributed with the CEVAE code (Louizos et al. 2017), one CSV per
replication, ``ihdp_npci_{r}.csv``, 747 units, no header. Columns: ``treatment, y_factual,
y_cfactual, mu0, mu1, x1 ... x25`` (x1-x6 continuous, x7-x25 binary; the true individual
effect is ``mu1 - mu0``).

Arrays come in the estimator contract's shapes for the static case, ``n_steps = 1``:
``X (n, 1, 25)``, ``T (n, 1)``, ``Y (n, 1)``.

Split: **90/10 train/test**, a seeded random permutation per replication, in one of two ways
(``split``): ``"seeded"`` (the default) draws it from ``split_seed`` and the replication number
together, so ``split_seed`` gives further splits of each replication; ``"replication"`` draws
it from the replication number alone (``numpy.random.default_rng(replication)``, the first
10% of the permutation held out), the split of common IHDP scripts. The estimators then
hold out 30% of the training units for early stopping (``training.val_fraction = 0.3``, the
default of TARNet, CFRNet and CEVAE here), which gives the usual 63/27/10
train/validation/test protocol of Shalit et al. (2017) and Louizos et al. (2017).

One departure from the raw files: ``x14`` is coded 1/2 there; it is shifted to 0/1 (as the
CEVAE code does), so that all 19 binary covariates are 0/1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kgcm.errors import DataError
from kgcm.synthetic.tasks import Task, named_features

__all__ = ["PUBLISHED_SQRT_PEHE", "SPLITS", "IHDPReplication", "ihdp_task", "load_ihdp"]

N_COLUMNS = 30
#: Columns of the binary covariates x7..x25 in X (0-based).
BINARY_FEATURES = tuple(range(6, 25))
FEATURE_NAMES = tuple(f"x{i}" for i in range(1, 26))
#: The ways of drawing the train/test split (see the module docstring).
SPLITS = ("seeded", "replication")
#: Published sqrt(PEHE), within-sample and out-of-sample, of the estimators that have one
#: (Shalit et al. 2017, Table 1, 1000 replications; Louizos et al. 2017, Table 2).
PUBLISHED_SQRT_PEHE: dict[str, tuple[float, float]] = {
    "tarnet": (0.88, 0.95),
    "cfrnet": (0.71, 0.76),
    "cevae": (2.7, 2.6),
}


@dataclass(frozen=True)
class IHDPReplication:
    """One IHDP replication with its train/test split.

    Attributes
    ----------
    X : ndarray, shape (n_units, 1, 25)
        Covariates x1..x25.
    T : ndarray, shape (n_units, 1)
        Treatment, 0/1.
    Y : ndarray, shape (n_units, 1)
        Factual outcome.
    Y_cf : ndarray, shape (n_units, 1)
        Counterfactual outcome (for reference; never for fitting).
    mu0, mu1 : ndarray, shape (n_units, 1)
        Noise-free potential outcomes; the true effect is ``mu1 - mu0``.
    train, test : ndarray of int
        Unit indices of the 90/10 split.
    replication : int
    path : str
    """

    X: np.ndarray
    T: np.ndarray
    Y: np.ndarray
    Y_cf: np.ndarray
    mu0: np.ndarray
    mu1: np.ndarray
    train: np.ndarray
    test: np.ndarray
    replication: int
    path: str

    @property
    def ite(self) -> np.ndarray:
        """True individual effect ``mu1 - mu0``, shape (n_units, 1)."""
        return self.mu1 - self.mu0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def binary_features(self) -> tuple[int, ...]:
        return BINARY_FEATURES


def load_ihdp(
    path_or_dir: str | os.PathLike[str],
    replication: int = 1,
    *,
    test_fraction: float = 0.1,
    split: str = "seeded",
    split_seed: int | None = None,
) -> IHDPReplication:
    """Read one IHDP replication and split it 90/10 into train and test units.

    Parameters
    ----------
    path_or_dir : path
        A folder holding ``ihdp_npci_{replication}.csv``, or the CSV file itself.
    replication : int
        1 to 10 (the folder's file number).
    test_fraction : float
        Share of units in the test split (0.1: the 90/10 protocol).
    split : {"seeded", "replication"}
        ``"seeded"``: the permutation is drawn from ``(split_seed, replication)``;
        ``"replication"``: from ``replication`` alone (no ``split_seed`` then). The same
        arguments give the same split.
    split_seed : int, optional
        With ``split="seeded"``, seeds the split together with ``replication`` (None: 0).

    Returns
    -------
    IHDPReplication
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / f"ihdp_npci_{replication}.csv"
    if not path.is_file():
        raise DataError(
            f"IHDP file {os.fspath(path)!r} not found. Pass the folder holding "
            f"ihdp_npci_1.csv ... ihdp_npci_10.csv (from the CEVAE repository, "
            f"datasets/IHDP/csv) or one of those files, and a replication number in 1..10."
        )
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}; got {split!r}.")
    if split == "replication" and split_seed is not None:
        raise DataError(
            f"split='replication' draws the split from the replication number alone, so "
            f"split_seed={split_seed!r} would be ignored; leave split_seed out, or use "
            f"split='seeded' to draw the split from (split_seed, replication)."
        )
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(
            f"{os.fspath(path)!r} is not an IHDP CSV of numbers ({exc}); expected 30 "
            f"comma-separated columns: treatment, y_factual, y_cfactual, mu0, mu1, x1..x25."
        ) from exc
    if table.shape[1] != N_COLUMNS:
        raise DataError(
            f"{os.fspath(path)!r} has {table.shape[1]} columns; an IHDP replication has "
            f"{N_COLUMNS}: treatment, y_factual, y_cfactual, mu0, mu1, x1..x25."
        )
    if not np.all(np.isfinite(table)):
        raise DataError(f"{os.fspath(path)!r} holds missing or infinite values.")
    t = table[:, 0]
    if not np.all((t == 0) | (t == 1)):
        raise DataError(f"{os.fspath(path)!r}: the treatment column holds values other than 0/1.")
    X = table[:, 5:].copy()
    x14 = X[:, 13]
    if np.all((x14 == 1) | (x14 == 2)):
        X[:, 13] = x14 - 1.0
    n = table.shape[0]
    if split == "replication":
        rng = np.random.default_rng(replication)
    else:
        rng = np.random.default_rng([0 if split_seed is None else split_seed, replication])
    order = rng.permutation(n)
    n_test = max(1, round(test_fraction * n))

    def col(j: int) -> np.ndarray:
        return table[:, j : j + 1].copy()

    return IHDPReplication(
        X=X[:, None, :],
        T=col(0),
        Y=col(1),
        Y_cf=col(2),
        mu0=col(3),
        mu1=col(4),
        train=np.sort(order[n_test:]),
        test=np.sort(order[:n_test]),
        replication=int(replication),
        path=os.fspath(path),
    )


def ihdp_task(params: dict[str, Any], seed: int, base: Path | None) -> Task:

    path = Path(params.pop("path", "benchmarks/data/ihdp"))
    if not path.is_absolute() and base is not None:
        path = base / path
    rep = load_ihdp(path, replication=seed % 10 + 1, **params)
    tr, te = rep.train, rep.test
    X_train = named_features(rep.X[tr], rep.feature_names)
    T_test = rep.T[te]
    ones, zeros = np.ones_like(T_test), np.zeros_like(T_test)
    return Task(
        Y_train=rep.Y[tr],
        T_train=rep.T[tr],
        X_train=X_train,
        X_test=rep.X[te],
        Y_test=rep.Y[te],
        T0_test=zeros,
        T1_test=ones,
        true_effect=rep.ite[te],
        cf_T1=1.0 - T_test,
        cf_Y1=rep.Y_cf[te],
        cf_start=0,
    )
