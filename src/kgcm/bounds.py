r"""Physical bounds of outcomes, and the bounded output transform that keeps models inside them.

Thickness, extent and area cannot be negative; concentration lies in [0, 1]; extent cannot
exceed the region's area. A model fitted on the raw outcome knows none of this, and a
counterfactual ``Y + effect`` can leave the physical range (negative summer extent). Here every
outcome is modelled in an *unbounded* coordinate :math:`u = g(y)` and mapped back with
:math:`g^{-1}`, which lands inside the bounds by construction:

.. math::

    \text{lower only:}\quad & y = L + s\,\mathrm{softplus}(u / s),
        \qquad u = s \log(\exp((y - L)/s) - 1) \\
    \text{lower and upper:}\quad & y = L + (U - L)\,\sigma(u / s'),
        \qquad s' = s / (U - L) \cdot 4 \\
    \text{upper only:}\quad & y = U - s\,\mathrm{softplus}(-u / s) \\
    \text{none:}\quad & y = u

``s`` is the outcome's scale (its training standard deviation): a value more than about one
``s`` from a bound is mapped almost linearly (``u ≈ y - L``), so the transform changes the model
only near the bounds. Values on or beyond a bound (a product's 0 over open water) are first
moved ``margin · s`` inside it, the resolution the transform keeps there.

Counterfactuals keep the factual outcome and move it in the unbounded coordinate
(:func:`OutcomeTransform.counterfactual`): :math:`y^{cf} = g^{-1}(g(y) + \Delta u)`, where
:math:`\Delta u` is the model's effect in that coordinate. It is the additive-noise abduction of
the factual residual on the scale where the model is additive, and it cannot leave the bounds:
under less ice-favourable forcing the extent shrinks toward zero but never below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kgcm.errors import ConfigError, InputError

__all__ = ["PHYSICAL_BOUNDS", "OutcomeTransform", "physical_bounds"]

#: Physical bounds (lower, upper) of the outcomes kgcm knows, by variable name and by CF
#: standard name. ``None`` is open. Extent's upper bound is the region's area, which only the
#: data know: set ``valid_max`` on the variable (or ``upper_bound`` in ``kgcm fit``).
PHYSICAL_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "sithick": (0.0, None),
    "sithick_effective": (0.0, None),
    "sivol": (0.0, None),
    "siconc": (0.0, 1.0),
    "sea_ice_extent": (0.0, None),
    "sea_ice_area": (0.0, None),
    "sea_ice_thickness": (0.0, None),
    "sea_ice_area_fraction": (0.0, 1.0),
}


def physical_bounds(name: str, attrs: Mapping[str, Any] | None = None) -> tuple[float | None, ...]:
    """The bounds ``(lower, upper)`` of an outcome variable.

    The variable's own ``valid_min`` / ``valid_max`` / ``valid_range`` attributes win (CF);
    then its name, then its ``standard_name`` in :data:`PHYSICAL_BOUNDS`; otherwise open.
    ``siconc`` given in percent (``units = "%"``) is bounded by 100.
    """
    attrs = dict(attrs or {})
    lower, upper = PHYSICAL_BOUNDS.get(
        name, PHYSICAL_BOUNDS.get(attrs.get("standard_name", ""), (None, None))
    )
    if str(attrs.get("units", "")).strip() == "%" and upper == 1.0:
        upper = 100.0
    if "valid_range" in attrs:
        lo, hi = np.asarray(attrs["valid_range"], dtype=float).ravel()[:2]
        lower, upper = float(lo), float(hi)
    if "valid_min" in attrs:
        lower = float(attrs["valid_min"])
    if "valid_max" in attrs:
        upper = float(attrs["valid_max"])
    return lower, upper


@dataclass(frozen=True)
class OutcomeTransform:
    """The map between an outcome ``y`` and its unbounded coordinate ``u`` (module docstring).

    Attributes
    ----------
    lower, upper : float or None
        Physical bounds; None is open.
    scale : float
        ``s``, the outcome's scale (its training standard deviation), > 0.
    margin : float
        Values within ``margin · scale`` of a bound are moved that far inside it.
    """

    lower: float | None = None
    upper: float | None = None
    scale: float = 1.0
    margin: float = 1e-3

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"the outcome scale must be a finite number > 0; got {self.scale!r}.")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ConfigError(
                f"the lower bound {self.lower!r} must be below the upper bound {self.upper!r}."
            )
        if not 0 < self.margin < 0.5:
            raise ConfigError(f"margin must be in (0, 0.5); got {self.margin!r}.")

    @classmethod
    def fit(
        cls, y: np.ndarray, lower: float | None, upper: float | None, *, margin: float = 1e-3
    ) -> OutcomeTransform:
        """The transform for training outcomes ``y`` (any shape): ``scale`` = their sd.

        Raises an error when most of ``y`` lies outside the bounds: wrong units or wrong bounds,
        not something to clip silently.
        """
        y = np.asarray(y, dtype=np.float64)
        finite = y[np.isfinite(y)]
        if finite.size == 0:
            raise InputError("the outcome has no finite values to fit the transform on.")
        outside = np.zeros(finite.shape, dtype=bool)
        if lower is not None:
            outside |= finite < lower
        if upper is not None:
            outside |= finite > upper
        if outside.mean() > 0.01:
            raise InputError(
                f"{outside.mean():.1%} of the outcome lies outside its physical bounds "
                f"[{lower}, {upper}] (range {finite.min():.4g} to {finite.max():.4g}): check its "
                f"units, or set the bounds explicitly (kgcm fit: lower_bound / upper_bound, or "
                f"bounds = 'none')."
            )
        scale = float(finite.std())
        if not scale > 0:
            scale = float(abs(finite).max()) or 1.0
        return cls(lower=lower, upper=upper, scale=scale, margin=margin)

    def _logistic_scale(self) -> float:
        # slope of y(u) at the centre equals 1, like the one-sided maps far from their bound
        return 4.0 / (self.upper - self.lower)  # type: ignore[operator]

    def clip(self, y: np.ndarray) -> np.ndarray:
        """``y`` moved at least ``margin · scale`` inside the bounds."""
        y = np.asarray(y, dtype=np.float64)
        eps = self.margin * self.scale
        if self.lower is not None and self.upper is not None:
            eps = min(eps, self.margin * (self.upper - self.lower))
        lo = -np.inf if self.lower is None else self.lower + eps
        hi = np.inf if self.upper is None else self.upper - eps
        return np.clip(y, lo, hi)

    def forward(self, y: np.ndarray) -> np.ndarray:
        """``u = g(y)``; NaN stays NaN."""
        with np.errstate(invalid="ignore"):
            return self._forward(self.clip(y))

    def _forward(self, y: np.ndarray) -> np.ndarray:
        s = self.scale
        if self.lower is not None and self.upper is not None:
            p = (y - self.lower) / (self.upper - self.lower)
            return np.log(p / (1.0 - p)) / self._logistic_scale()
        if self.lower is not None:
            return s * _softplus_inverse((y - self.lower) / s)
        if self.upper is not None:
            return -s * _softplus_inverse((self.upper - y) / s)
        return y

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """``y = g⁻¹(u)``: inside the bounds for every finite ``u``; NaN stays NaN."""
        with np.errstate(invalid="ignore"):
            return self._inverse(np.asarray(u, dtype=np.float64))

    def _inverse(self, u: np.ndarray) -> np.ndarray:
        s = self.scale
        if self.lower is not None and self.upper is not None:
            from scipy.special import expit

            return self.lower + (self.upper - self.lower) * expit(u * self._logistic_scale())
        if self.lower is not None:
            return self.lower + s * np.logaddexp(0.0, u / s)
        if self.upper is not None:
            return self.upper - s * np.logaddexp(0.0, -u / s)
        return u

    def counterfactual(self, y: np.ndarray, delta_u: np.ndarray) -> np.ndarray:
        """``g⁻¹(g(y) + Δu)``: the factual outcome moved by an effect in the unbounded
        coordinate (broadcasts ``delta_u`` against ``y``); NaN where either is NaN."""
        with np.errstate(invalid="ignore"):  # NaN (no data) in, NaN out
            return self.inverse(self.forward(y) + np.asarray(delta_u, dtype=np.float64))


def _softplus_inverse(x: np.ndarray) -> np.ndarray:
    # log(exp(x) - 1), stable for large x (x + log(1 - exp(-x))) and for small x > 0
    x = np.asarray(x, dtype=np.float64)
    return x + np.log(-np.expm1(-x))
