r"""``arctic``: a gridded Arctic-like simulator with exact potential outcomes.

Synthetic, not an ocean model: a small, identifiable causal system with Arctic magnitudes, built
so that every effect is known exactly. Per day :math:`t` and grid cell :math:`c` on a polar
stereographic grid around the North Pole (2-D lat/lon, ``dx`` km spacing):

1. **Latent forcing** :math:`U_{t,c}` (unobserved; unit variance): white noise smoothed in space
   by a Gaussian of ``corr_length`` cells, then AR(1) in time with coefficient ``memory``.
   It stands for unresolved atmospheric forcing acting on ocean and ice together.
2. **SSH** (m): a Beaufort-gyre-like dome ``dome · exp(−r²/2R²)`` + seasonal cycle
   + 0.05 m · U + ``proxy_noise`` × smooth noise.
3. **Surface currents** (m/s, east/north): geostrophic from the SSH gradient,
   :math:`u_g = -(g/f)\,\partial_y h,\ v_g = (g/f)\,\partial_x h` on the grid, rotated from grid
   to east/north, plus noise (2 × ``proxy_noise`` m/s). Speed is :math:`\lVert u \rVert`.
4. **Treatment** (m/s): the knowledge-guided velocity modulation
   :math:`v^{kg}_t = \mathrm{MA}_w(\lVert u\rVert)_t (1 + α σ(k(Δh_t − τ)))`
   plus a hidden share of the confounder and exogenous noise,

   .. math:: T_{t,c} = v^{kg}_{t,c} + γ\,s_{kg}\,U_{t,c} + η\,s_{kg}\,ε^T_{t,c},

   with :math:`s_{kg}` the spread of :math:`v^{kg}`, γ = ``confounding``, η = ``treatment_noise``
   (η > 0 keeps overlap).
5. **Sea-ice thickness** (m):

   .. math::

       y_{t,c} = b_c + a\,\mathrm{season}_t + β\,U_{t,c} + m_{t,c} + σ_y ε^y_{t,c}

   with base thickness :math:`b_c` rising towards the pole, a winter-maximum seasonal cycle
   (peak mid-April), confounding :math:`β = ` ``confounding`` × 0.25 m, and the treatment
   response :math:`m_{t,c} = -θ_{t,c}\, H_s \tanh(H_{t,c} / H_s)` to the treatment **history**
   :math:`H_{t,c} = \sum_{l=0}^{L-1} w_l T_{t-l,c}` (exponential kernel, e-folding
   ``response_days``, weights summing to 1). The sensitivity is heterogeneous,

   .. math:: θ_{t,c} = θ_0 \bigl(1 + ζ \tanh(U_{t,c} - \mathrm{season}_t
             + \tilde h_{t,c})\bigr),

   :math:`ζ` = ``heterogeneity`` (0 to 0.95), :math:`\tilde h` the standardised SSH anomaly
   (observed): the thin-ice melt season and high-forcing states respond more strongly.

6. **Feedback** (off by default; both knobs 0 leave every world unchanged bit for bit). With
   ``ocean_feedback`` = κ_o the SSH responds to the previous day's forcing,

   .. math:: h_t = h^{free}_t + κ_o \cdot 0.05\,\mathrm{m} \cdot
             G_{\ell} * (T_{t-1} - \bar v^{kg}) / s_{kg},

   with :math:`G_\ell` the Gaussian smoothing of the latent forcing (``corr_length`` cells:
   the ocean answers the forcing at its spatial scale, not cell by cell), and the currents,
   geostrophic from SSH, with it (so the observed ocean state is post-treatment, and the SIT
   sensitivity θ, which reads the SSH anomaly, too). With
   ``ice_feedback`` = κ_i the forcing responds to the previous day's ice anomaly,

   .. math:: T_t \mathrel{+}= κ_i\, s_{kg}\, (y_{t-1} - b_c - 0.6\,\mathrm{season}_{t-1})
             / 0.25\,\mathrm{m},

   so the treatment is confounded by the outcome history. The knowledge-guided part
   :math:`v^{kg}` is computed from the ocean state before its feedback response (it keeps the
   simulation one recursion over days); the SSH anomaly that enters θ is standardised with the
   feedback-free SSH's mean and spread, and :math:`H_s` is set from the treatment before the
   ice feedback, so the response model's constants do not depend on the path.

**Potential outcomes.** Under any alternative treatment path :math:`T^1` the same noise draws
give :math:`y(T^1) = y(T^0) - m(T^0) + m(T^1)`, exactly. For windowed units (``window``
steps from ``start``), the intervention applies inside the window and history before it stays
factual (:meth:`ArcticSimulation.window_effects`), which is what a model that sees the window
can be asked about. With feedback on, a plan also moves the SSH and currents after it starts;
:meth:`ArcticSimulation.plan_outcomes` (a plan for the whole field from a given day) and
:meth:`ArcticSimulation.window_plan_outcomes` (a plan per windowed unit from step ``history`` of
its window) re-simulate the outcome and the covariates under the plan with the same noise draws:
the plan fixes the treatment, so the ice feedback is cut, and the ocean's response is the only
path besides the direct one.

Constants are ours (chosen for realistic magnitudes: SIT 0.5-4 m with a winter maximum, SSH
tenths of metres, currents a few cm/s), not fitted to any product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage, signal

from kgcm.errors import ConfigError, InputError, did_you_mean
from kgcm.synthetic._cf import grid_coords
from kgcm.synthetic.tasks import Task, grid_task
from kgcm.treatments import Scenario, VelocityModulation, speed, velocity_modulation

__all__ = [
    "ArcticConfig",
    "ArcticSimulation",
    "EvaluationDesign",
    "PlanOutcomes",
    "Scenario",
    "arctic_forecast_task",
    "arctic_task",
    "evaluation_design",
    "forecast_settings",
    "simulate_arctic",
]

GRAVITY = 9.81  # m s-2
OMEGA = 7.2921e-5  # rad s-1
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class ArcticConfig:
    """Knobs of the ``arctic`` simulator (see the module docstring for the equations).

    Attributes
    ----------
    ny, nx : int
        Grid size (cells).
    days : int
        Length of the daily series.
    start : str
        First date (ISO).
    dx_km : float
        Grid spacing in km (polar stereographic, centred on the pole).
    confounding : float
        Strength γ of the hidden confounder in the treatment (in units of the treatment's
        spread) and, × 0.25 m, its direct effect β on SIT. 0 removes confounding.
    heterogeneity : float
        ζ in [0, 0.95]: spread of the sensitivity θ across states.
    effect_size : float
        θ_0, SIT response in m per (m/s) of sustained treatment.
    response_days : float
        e-folding time of the SIT response to treatment history (days).
    response_length : int
        Days of treatment history that reach SIT (L).
    treatment_noise : float
        η: exogenous treatment noise, in units of the treatment's spread (overlap).
    outcome_noise : float
        σ_y in m.
    proxy_noise : float
        Observation noise of SSH in m (currents get 2× this in m/s): how well the observed
        drivers reveal the latent forcing, hence how identifiable the effect is.
    corr_length : float
        Spatial correlation length of the latent forcing (cells).
    memory : float
        AR(1) coefficient of the latent forcing per day (0 to 0.999).
    ocean_feedback : float
        κ_o in [-2, 2]: response of SSH (and so the currents) to the previous day's treatment,
        in units of 0.05 m per treatment spread. 0: none.
    ice_feedback : float
        κ_i in [-2, 2]: response of the treatment to the previous day's SIT anomaly, in
        treatment spreads per 0.25 m. 0: none.
    seed : int
        Seed of every random draw.
    modulation : VelocityModulation
        Constants of the knowledge-guided treatment.
    """

    ny: int = 24
    nx: int = 24
    days: int = 365
    start: str = "2015-01-01"
    dx_km: float = 50.0
    confounding: float = 1.0
    heterogeneity: float = 0.6
    effect_size: float = 6.0
    response_days: float = 3.0
    response_length: int = 10
    treatment_noise: float = 0.5
    outcome_noise: float = 0.05
    proxy_noise: float = 0.005
    corr_length: float = 3.0
    memory: float = 0.95
    ocean_feedback: float = 0.0
    ice_feedback: float = 0.0
    seed: int = 0
    modulation: VelocityModulation = field(default_factory=VelocityModulation)

    def __post_init__(self) -> None:
        ints = {"ny": 2, "nx": 2, "days": 2, "response_length": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"arctic.{name} must be an integer >= {low}; got {value!r}.")
        ranges = {
            "dx_km": (1e-3, 1e3),
            "confounding": (0.0, 10.0),
            "heterogeneity": (0.0, 0.95),
            "effect_size": (-1e3, 1e3),
            "response_days": (1e-3, 1e3),
            "treatment_noise": (0.0, 10.0),
            "outcome_noise": (0.0, 10.0),
            "proxy_noise": (0.0, 1.0),
            "corr_length": (0.0, 1e3),
            "memory": (0.0, 0.999),
            "ocean_feedback": (-2.0, 2.0),
            "ice_feedback": (-2.0, 2.0),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not (isinstance(value, int | float) and low <= value <= high):
                raise ConfigError(
                    f"arctic.{name} must be a number in [{low}, {high}]; got {value!r}."
                )
        try:
            pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"arctic.start must be an ISO date; got {self.start!r}.") from exc
        if isinstance(self.modulation, dict):  # from a config file
            object.__setattr__(self, "modulation", VelocityModulation(**self.modulation))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def feedback(self) -> bool:
        """Whether any feedback knob is on."""
        return bool(self.ocean_feedback or self.ice_feedback)


@dataclass(frozen=True)
class _OceanState:
    """What re-simulating the ocean's feedback response needs (float64, internal)."""

    ssh: np.ndarray  # (time, y, x) factual SSH, m
    ssh_mean: np.ndarray  # (y, x) standardisation of the SSH anomaly in θ
    ssh_std: np.ndarray  # (y, x)
    season: np.ndarray  # (time, 1, 1)
    centre: float  # mean of the knowledge-guided treatment, m/s
    spread: float  # its spread s_kg, m/s
    coriolis: np.ndarray  # (1, y, x), s-1
    angle: np.ndarray  # (1, y, x), grid to east/north, rad
    dx_m: float
    smoothing: float  # cells: the ocean answers the forcing at the forcing's spatial scale
    self_weight: float  # share of a one-cell forcing change that stays in its own cell

    def answer(self, dtreat: np.ndarray, gain: float) -> np.ndarray:
        """SSH change (m) answering a treatment change of the previous day, ``(..., y, x)``."""
        if self.smoothing > 0:
            sigma = (0,) * (dtreat.ndim - 2) + (self.smoothing, self.smoothing)
            dtreat = ndimage.gaussian_filter(dtreat, sigma=sigma, mode="wrap")
        return gain * 0.05 * dtreat / self.spread


@dataclass(frozen=True)
class PlanOutcomes:
    """Outcome and covariates under a treatment plan (same noise draws as the factual run).

    Each array has the shape of the plan's request: ``(time, y, x)`` for a whole-field plan,
    ``(n_units, h)`` for windowed units.
    """

    sithick: np.ndarray  # m
    zos: np.ndarray  # m
    uo: np.ndarray  # m/s
    vo: np.ndarray  # m/s


@dataclass(frozen=True)
class ArcticSimulation:
    """A simulated run: observables, hidden state and the response model.

    Attributes
    ----------
    dataset : xarray.Dataset on (time, y, x)
        Observables with CF attributes: ``sithick``, ``zos``, ``uo``, ``vo``, ``treatment``,
        and 2-D ``lat``/``lon``. The latent forcing is NOT in it (unobserved).
    latent : ndarray (time, y, x)
        The latent forcing U (for diagnostics only).
    sensitivity : ndarray (time, y, x)
        θ, m per (m/s).
    config : ArcticConfig
    """

    dataset: xr.Dataset
    latent: np.ndarray
    sensitivity: np.ndarray
    kernel: np.ndarray
    saturation: float
    config: ArcticConfig
    ocean: _OceanState | None = None

    def response(self, treatment: np.ndarray) -> np.ndarray:
        """SIT response m(T) in m for a treatment path (time, y, x)."""
        return _response(
            np.asarray(treatment, np.float64), self.sensitivity, self.kernel, self.saturation
        )

    def potential_outcome(self, t1: np.ndarray) -> np.ndarray:
        """SIT (time, y, x) under a whole alternative path ``T1`` (same noise draws)."""
        t0 = self.dataset["treatment"].values
        t1 = np.asarray(t1, dtype=np.float64)
        if t1.shape != t0.shape:
            raise InputError(f"T1 has shape {t1.shape}; expected {t0.shape} (time, y, x).")
        y0 = self.dataset["sithick"].values.astype(np.float64)
        return y0 - self.response(t0) + self.response(t1)

    def window_effects(
        self,
        t1_windows: np.ndarray,
        cells: np.ndarray,
        starts: np.ndarray,
        window: int,
    ) -> np.ndarray:
        """Exact effects for windowed units, ``(n_units, window)``.

        Unit ``i`` is cell ``cells[i] = (iy, ix)`` over days ``starts[i] .. starts[i]+window-1``.
        Inside the window the treatment follows ``t1_windows[i]``; before it, the factual path.
        """
        t0_all = self.dataset["treatment"].values
        n = len(starts)
        if t1_windows.shape != (n, window):
            raise InputError(f"T1 has shape {t1_windows.shape}; expected {(n, window)}.")
        pre = len(self.kernel) - 1
        steps = starts[:, None] + np.arange(-pre, window)[None, :]
        steps_c = np.clip(steps, 0, None)
        iy, ix = cells[:, 0][:, None], cells[:, 1][:, None]
        t0_ext = np.where(steps >= 0, t0_all[steps_c, iy, ix], 0.0)  # (n, pre + window)
        t1_ext = t0_ext.copy()
        t1_ext[:, pre:] = t1_windows
        theta = self.sensitivity[steps_c, iy, ix]
        m0 = _response(t0_ext, theta, self.kernel, self.saturation, axis=1)
        m1 = _response(t1_ext, theta, self.kernel, self.saturation, axis=1)
        return (m1 - m0)[:, pre:]

    def _moved_sensitivity(
        self,
        theta0: np.ndarray,
        latent: np.ndarray,
        ssh1: np.ndarray,
        season: np.ndarray,
        changed: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> np.ndarray:
        """θ where the SSH moved (``changed``), the factual θ elsewhere (bit for bit)."""
        cfg = self.config
        moved = cfg.effect_size * (
            1.0 + cfg.heterogeneity * np.tanh(latent - season + (ssh1 - mean) / std)
        )
        return np.where(changed, moved, theta0)

    def plan_outcomes(self, plan: np.ndarray, start: int) -> PlanOutcomes:
        """Re-simulate the whole field under ``plan`` from day ``start`` on.

        Parameters
        ----------
        plan : ndarray (time - start, y, x) or (time, y, x)
            Treatment from day ``start`` on (m/s); a full-length path's days before ``start``
            are ignored (they stay factual).
        start : int
            First day of the plan (0 <= start < time).

        Returns
        -------
        PlanOutcomes
            SIT, SSH and currents, each (time, y, x): factual before ``start``; afterwards the
            treatment is the plan (the ice feedback is cut) and, with ``ocean_feedback``, SSH
            and the currents follow the plan's previous day. Same noise draws throughout.
        """
        assert self.ocean is not None
        o = self.ocean
        t0 = self.dataset["treatment"].values
        nt = t0.shape[0]
        if not (isinstance(start, int | np.integer) and 0 <= start < nt):
            raise InputError(f"start must be a day index in [0, {nt}); got {start!r}.")
        plan = np.asarray(plan, dtype=np.float64)
        if plan.shape == t0.shape:
            plan = plan[start:]
        if plan.shape != (nt - start, *t0.shape[1:]):
            raise InputError(
                f"plan has shape {plan.shape}; expected {(nt - start, *t0.shape[1:])} (the days "
                f"from start={start} on, y, x) or the full {t0.shape}."
            )
        t1 = t0.copy()
        t1[start:] = plan
        # SSH answers the previous day's treatment: it moves from day start + 1 on
        dssh = np.zeros_like(t0)
        dssh[1:] = o.answer(t1[:-1] - t0[:-1], self.config.ocean_feedback)
        changed = dssh != 0.0
        ssh1 = o.ssh + dssh
        theta1 = self._moved_sensitivity(
            self.sensitivity, self.latent, ssh1, o.season, changed, o.ssh_mean, o.ssh_std
        )
        y0 = self.dataset["sithick"].values.astype(np.float64)
        y1 = y0.copy()  # factual before the plan, exactly
        y1[start:] = (
            y0
            - _response(t0, self.sensitivity, self.kernel, self.saturation)
            + _response(t1, theta1, self.kernel, self.saturation)
        )[start:]
        du, dv = _geostrophic(dssh, o.coriolis, o.angle, o.dx_m)
        ds = self.dataset
        return PlanOutcomes(
            sithick=y1,
            zos=ds["zos"].values.astype(np.float64) + dssh,
            uo=ds["uo"].values.astype(np.float64) + du,
            vo=ds["vo"].values.astype(np.float64) + dv,
        )

    def window_plan_outcomes(
        self,
        plans: np.ndarray,
        cells: np.ndarray,
        starts: np.ndarray,
        history: int,
    ) -> PlanOutcomes:
        """Outcome and covariates of windowed units under per-unit plans, ``(n_units, h)``.

        Unit ``i`` is cell ``cells[i] = (iy, ix)`` over days ``starts[i] ..``; its treatment
        is factual for the first ``history`` days of the window and ``plans[i]`` for the ``h``
        days after. Only the unit's own cell is re-planned (its neighbours stay factual), so
        its SSH moves with ``ocean_feedback`` while the currents, central differences of the
        neighbours' SSH, stay factual (a one-cell change raises a symmetric SSH bump). Same
        noise draws as the factual run.
        """
        assert self.ocean is not None
        o = self.ocean
        t0_all = self.dataset["treatment"].values
        plans = np.asarray(plans, dtype=np.float64)
        n = len(starts)
        if plans.ndim != 2 or plans.shape[0] != n or plans.shape[1] < 1:
            raise InputError(f"plans has shape {plans.shape}; expected ({n}, h) with h >= 1.")
        h = plans.shape[1]
        if history < 1 or np.any(starts + history + h > t0_all.shape[0]) or np.any(starts < 0):
            raise InputError(
                f"windows of {history} + {h} days from the given starts leave the simulated "
                f"{t0_all.shape[0]} days; shorten the plan or the history."
            )
        pre = len(self.kernel) - 1
        first = starts + history  # the plan's first day per unit
        steps = first[:, None] + np.arange(-pre - 1, h)[None, :]  # the day before for SSH
        steps_c = np.clip(steps, 0, None)
        iy, ix = cells[:, 0][:, None], cells[:, 1][:, None]
        t0 = np.where(steps >= 0, t0_all[steps_c, iy, ix], 0.0)  # (n, pre + 1 + h)
        t1 = t0.copy()
        t1[:, pre + 1 :] = plans
        dssh = np.zeros_like(t0)
        # a one-cell change keeps self_weight of its smoothed SSH answer in the cell
        gain = self.config.ocean_feedback * o.self_weight
        dssh[:, 1:] = gain * 0.05 * (t1[:, :-1] - t0[:, :-1]) / o.spread
        ssh0 = o.ssh[steps_c, iy, ix]
        theta0 = self.sensitivity[steps_c, iy, ix]
        theta1 = self._moved_sensitivity(
            theta0,
            self.latent[steps_c, iy, ix],
            ssh0 + dssh,
            o.season[steps_c, 0, 0],
            dssh != 0.0,
            o.ssh_mean[iy, ix],
            o.ssh_std[iy, ix],
        )
        m0 = _response(t0, theta0, self.kernel, self.saturation, axis=1)
        m1 = _response(t1, theta1, self.kernel, self.saturation, axis=1)
        days = steps_c[:, pre + 1 :]
        ds = self.dataset
        y0 = ds["sithick"].values[days, iy, ix].astype(np.float64)
        return PlanOutcomes(
            sithick=y0 + (m1 - m0)[:, pre + 1 :],
            zos=ds["zos"].values[days, iy, ix].astype(np.float64) + dssh[:, pre + 1 :],
            uo=ds["uo"].values[days, iy, ix].astype(np.float64),
            vo=ds["vo"].values[days, iy, ix].astype(np.float64),
        )


def _response(
    treatment: np.ndarray, theta: np.ndarray, kernel: np.ndarray, saturation: float, axis: int = 0
) -> np.ndarray:
    """m = -θ · H_s · tanh(H / H_s), H the causal kernel filter of the treatment."""
    history = _causal_filter(treatment, kernel, axis=axis)
    return -theta * saturation * np.tanh(history / saturation)


def _causal_filter(a: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """``out_t = sum_l kernel[l] * a_{t-l}`` along ``axis`` (zero before the start)."""
    return signal.lfilter(kernel, [1.0], a, axis=axis)


def _polar_grid(ny: int, nx: int, dx_km: float) -> tuple[np.ndarray, ...]:
    """Polar stereographic grid (true scale at the pole) centred on it: x, y (km), lat, lon."""
    x = (np.arange(nx) - (nx - 1) / 2.0) * dx_km
    y = (np.arange(ny) - (ny - 1) / 2.0) * dx_km
    xx, yy = np.meshgrid(x, y)
    rho = np.hypot(xx, yy)
    lat = 90.0 - np.degrees(2.0 * np.arctan(rho / (2.0 * EARTH_RADIUS_KM)))
    lon_0 = -45.0
    lon = (np.degrees(np.arctan2(xx, -yy)) + lon_0 + 180.0) % 360.0 - 180.0
    return x, y, lat, lon


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], length: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed in space (last two axes) over ``length`` cells."""
    e = rng.standard_normal(shape)
    if length > 0:
        e = ndimage.gaussian_filter(e, sigma=(0, length, length), mode="wrap")
    return e / e.std()


def _ar1(e: np.ndarray, rho: float) -> np.ndarray:
    """Stationary AR(1) along axis 0 with unit variance from unit-variance innovations."""
    zi = (e[0] * rho)[None]  # start in the stationary distribution
    out, _ = signal.lfilter([np.sqrt(1.0 - rho * rho)], [1.0, -rho], e, axis=0, zi=zi)
    return out


def simulate_arctic(config: ArcticConfig | None = None, **overrides: Any) -> ArcticSimulation:
    """Run the ``arctic`` simulator.

    Parameters
    ----------
    config : ArcticConfig, optional
        Defaults when omitted; keyword ``overrides`` replace single fields (``ny=8``).

    Returns
    -------
    ArcticSimulation
    """
    if overrides:
        base = (config or ArcticConfig()).to_dict()
        unknown = set(overrides) - set(base)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"unknown arctic simulator setting {key!r}; expected one of {sorted(base)}."
                f"{did_you_mean(key, base)}"
            )
        config = ArcticConfig(**{**base, **overrides})
    cfg = config or ArcticConfig()
    rng = np.random.default_rng(cfg.seed)
    nt, ny, nx = cfg.days, cfg.ny, cfg.nx
    time = pd.date_range(cfg.start, periods=nt, freq="D")
    doy = time.day_of_year.to_numpy()
    # season: +1 at the mid-April SIT maximum, -1 at the mid-October minimum
    season = np.cos(2.0 * np.pi * (doy - 105) / 365.25)[:, None, None]
    x_km, y_km, lat, lon = _polar_grid(ny, nx, cfg.dx_km)

    # 1. latent forcing
    latent = _ar1(_smooth_noise(rng, (nt, ny, nx), cfg.corr_length), cfg.memory)

    # 2. SSH (m)
    r2 = (x_km[None, :] ** 2 + y_km[:, None] ** 2) / (0.35 * max(ny, nx) * cfg.dx_km) ** 2
    dome = 0.25 * np.exp(-0.5 * r2)[None]
    ssh = (
        dome
        + 0.04 * np.cos(2.0 * np.pi * (doy - 280) / 365.25)[:, None, None]
        + 0.05 * latent
        + cfg.proxy_noise * _smooth_noise(rng, (nt, ny, nx), max(cfg.corr_length, 1.0))
    )

    # 3. geostrophic currents on the grid, rotated to east/north
    f = 2.0 * OMEGA * np.sin(np.radians(lat))[None]
    dhdy, dhdx = np.gradient(ssh, cfg.dx_km * 1e3, axis=(1, 2))
    velocity_noise = 2.0 * cfg.proxy_noise  # m/s
    u_grid = -GRAVITY / f * dhdy + velocity_noise * rng.standard_normal((nt, ny, nx))
    v_grid = GRAVITY / f * dhdx + velocity_noise * rng.standard_normal((nt, ny, nx))
    # the grid's +y axis points to lon_0 + 180 at x = 0; angle between grid and east is
    # (lon - lon_0) for this projection
    angle = np.radians(lon - (-45.0))[None]
    u_east = u_grid * np.cos(angle) + v_grid * np.sin(angle)
    v_north = -u_grid * np.sin(angle) + v_grid * np.cos(angle)

    # 4. treatment
    kg = velocity_modulation(speed(u_east, v_north), ssh, cfg.modulation)
    spread = float(kg.std())
    treatment = (
        kg
        + cfg.confounding * spread * latent
        + cfg.treatment_noise * spread * rng.standard_normal((nt, ny, nx))
    )

    # 5. SIT
    ssh_mean, ssh_std = ssh.mean(axis=0), ssh.std(axis=0)
    ssh_anom = (ssh - ssh_mean) / ssh_std
    theta = cfg.effect_size * (1.0 + cfg.heterogeneity * np.tanh(latent - season + ssh_anom))
    lags = np.arange(cfg.response_length)
    kernel = np.exp(-lags / cfg.response_days)
    kernel /= kernel.sum()
    base = 1.2 + 1.3 * ((lat - lat.min()) / max(np.ptp(lat), 1e-9))[None]
    y_free = (
        base
        + 0.6 * season
        + 0.25 * cfg.confounding * latent
        + cfg.outcome_noise * rng.standard_normal((nt, ny, nx))
    )
    # H_s: twice the typical treatment level keeps the response mildly non-linear
    saturation = float(2.0 * np.abs(treatment).mean())
    f_m = 2.0 * OMEGA * np.sin(np.radians(lat))[None]
    ocean = _OceanState(
        ssh=ssh,
        ssh_mean=ssh_mean,
        ssh_std=ssh_std,
        season=season,
        centre=float(kg.mean()),
        spread=spread,
        coriolis=f_m,
        angle=angle,
        dx_m=cfg.dx_km * 1e3,
        smoothing=float(cfg.corr_length),
        self_weight=_self_weight(ny, nx, cfg.corr_length),
    )
    if cfg.feedback:
        treatment, ssh, theta, sithick = _run_feedback(
            cfg, ocean, treatment, latent, y_free, base, kernel, saturation
        )
        du, dv = _geostrophic(ssh - ocean.ssh, f_m, angle, ocean.dx_m)
        u_east, v_north = u_east + du, v_north + dv
        ocean = replace(ocean, ssh=ssh)
    else:
        sithick = y_free + _response(treatment, theta, kernel, saturation)
    ds = _dataset(time, x_km, y_km, lat, lon, ssh, u_east, v_north, treatment, sithick, cfg)
    sim = ArcticSimulation(
        dataset=ds,
        latent=latent,
        sensitivity=theta,
        kernel=kernel,
        saturation=saturation,
        config=cfg,
        ocean=ocean,
    )
    return sim


def _self_weight(ny: int, nx: int, length: float) -> float:
    """Share of a one-cell field that the spatial smoothing leaves in that cell."""
    if length <= 0:
        return 1.0
    delta = np.zeros((ny, nx))
    delta[ny // 2, nx // 2] = 1.0
    return float(ndimage.gaussian_filter(delta, sigma=length, mode="wrap")[ny // 2, nx // 2])


def _geostrophic(
    dssh: np.ndarray, coriolis: np.ndarray, angle: np.ndarray, dx_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """East/north geostrophic current (m/s) of an SSH field (time, y, x), no noise."""
    dhdy, dhdx = np.gradient(dssh, dx_m, axis=(1, 2))
    u_grid, v_grid = -GRAVITY / coriolis * dhdy, GRAVITY / coriolis * dhdx
    return (
        u_grid * np.cos(angle) + v_grid * np.sin(angle),
        -u_grid * np.sin(angle) + v_grid * np.cos(angle),
    )


def _run_feedback(
    cfg: ArcticConfig,
    ocean: _OceanState,
    treatment: np.ndarray,
    latent: np.ndarray,
    y_free: np.ndarray,
    base: np.ndarray,
    kernel: np.ndarray,
    saturation: float,
) -> tuple[np.ndarray, ...]:
    """The factual run with feedback: treatment, SSH, θ and SIT, each (time, y, x).

    Each day needs the previous day's SIT (ice → forcing) and treatment (forcing → ocean), so
    the run is one recursion over days, each day vectorised over the grid.
    """
    nt = treatment.shape[0]
    treat = treatment.copy()
    ssh = ocean.ssh.copy()
    theta = np.empty_like(treat)
    sit = np.empty_like(treat)
    climatology = base + 0.6 * ocean.season  # (time, y, x): SIT without forcing or noise
    weights = kernel[:, None, None]
    for t in range(nt):
        if t:
            ssh[t] += ocean.answer(treat[t - 1] - ocean.centre, cfg.ocean_feedback)
            treat[t] += cfg.ice_feedback * ocean.spread * (sit[t - 1] - climatology[t - 1]) / 0.25
        theta[t] = cfg.effect_size * (
            1.0
            + cfg.heterogeneity
            * np.tanh(latent[t] - ocean.season[t] + (ssh[t] - ocean.ssh_mean) / ocean.ssh_std)
        )
        recent = treat[max(0, t - len(kernel) + 1) : t + 1][::-1]  # T_t, T_{t-1}, ...
        history = (weights[: len(recent)] * recent).sum(axis=0)
        sit[t] = y_free[t] - theta[t] * saturation * np.tanh(history / saturation)
    return treat, ssh, theta, sit


def _dataset(
    time: pd.DatetimeIndex,
    x_km: np.ndarray,
    y_km: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    ssh: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    treatment: np.ndarray,
    sithick: np.ndarray,
    cfg: ArcticConfig,
) -> xr.Dataset:
    dims = ("time", "y", "x")
    f32 = np.float32
    ds = xr.Dataset(
        {
            "sithick": (
                dims,
                sithick.astype(f32),
                {
                    "standard_name": "sea_ice_thickness",
                    "units": "m",
                    "long_name": "sea-ice thickness (ice-covered part; synthetic)",
                },
            ),
            "zos": (
                dims,
                ssh.astype(f32),
                {
                    "standard_name": "sea_surface_height_above_geoid",
                    "units": "m",
                    "long_name": "sea-surface height (synthetic)",
                },
            ),
            "uo": (
                dims,
                u.astype(f32),
                {
                    "standard_name": "eastward_sea_water_velocity",
                    "units": "m s-1",
                    "long_name": "eastward surface ocean velocity (synthetic)",
                },
            ),
            "vo": (
                dims,
                v.astype(f32),
                {
                    "standard_name": "northward_sea_water_velocity",
                    "units": "m s-1",
                    "long_name": "northward surface ocean velocity (synthetic)",
                },
            ),
            "treatment": (
                dims,
                treatment.astype(np.float64),
                {
                    "units": "m s-1",
                    "long_name": "knowledge-guided velocity modulation with hidden forcing share",
                },
            ),
        },
        coords=grid_coords(time, y_km, x_km, lat, lon),
        attrs={
            "Conventions": "CF-1.8",
            "title": "kgcm arctic simulator (synthetic; not observations)",
            "source": "kgcm.synthetic.arctic",
            "kgcm_config": repr(cfg.to_dict()),
        },
    )
    for name in ("sithick", "zos", "uo", "vo", "treatment"):
        ds[name].attrs["coordinates"] = "lat lon"
    return ds


# --------------------------------------------------------------------------------------------
# The arctic tasks (kgcm.synthetic.tasks): held-out cells with exact effects


def arctic_task(params: dict[str, Any], seed: int, base: Path | None) -> Task:
    from kgcm.config import from_dict
    from kgcm.sequences import split_units, to_sequences

    window = int(params.pop("window", 30))
    test_fraction = float(params.pop("test_fraction", 0.25))
    design = evaluation_design(params, window)
    arctic = from_dict(ArcticConfig, {**params, "seed": seed}, where="arctic")
    sim = simulate_arctic(arctic)
    seqs = to_sequences(sim.dataset, window=window)
    tr, te = split_units(
        seqs, test_fraction=test_fraction, seed=seed, by=design.split, block=design.block
    )
    train, test = seqs.subset(tr), seqs.subset(te)
    shift = design.shift_sd * float(seqs.T.std()) if design.shift_sd is not None else None
    T1 = design.plan(test.T, design.burn_in, shift)
    truth = sim.window_effects(T1, test.cells, test.starts, window)
    start = max(window // 2, design.burn_in)
    cf_T1 = design.plan(test.T, start, shift)
    cf_effect = sim.window_effects(cf_T1, test.cells, test.starts, window)
    task = grid_task(train, test, T1, truth, cf_T1, cf_effect, start)
    return replace(task, score_from=design.burn_in)


@dataclass(frozen=True)
class EvaluationDesign:
    """How an ``arctic`` world is evaluated: the scenario (``scale``, or an in-support
    ``shift_sd``: T1 = T0 + shift_sd x sd(T)), the split (``cell``, ``block`` tiles of
    ``block`` cells, ``time``) and a factual ``burn_in``: the first steps of each window keep
    the factual treatment and are not scored, so the scored effects depend on treatment
    history inside the window only when ``burn_in >= response_length - 1``."""

    scale: float = 1.5
    shift_sd: float | None = None
    split: str = "cell"
    block: int = 6
    burn_in: int = 0

    def plan(self, T0: np.ndarray, start: int, shift: float | None) -> np.ndarray:
        """T1: the factual path before step ``start``, the scenario from it on."""
        from kgcm.treatments import Scenario

        scenario = Scenario("shift", shift) if shift is not None else Scenario("scale", self.scale)
        return scenario.apply_from(T0, start)


def evaluation_design(params: dict[str, Any], window: int) -> EvaluationDesign:
    """Pop the evaluation settings out of an ``arctic`` dataset's params (checked)."""
    if "scale" in params and "shift_sd" in params:
        raise ConfigError(
            "an arctic dataset takes one scenario: scale (T1 = scale x T0) or shift_sd "
            "(T1 = T0 + shift_sd x sd(T)); remove one of them."
        )
    design = EvaluationDesign(
        scale=float(params.pop("scale", 1.5)),
        shift_sd=None if params.get("shift_sd") is None else float(params.pop("shift_sd")),
        split=str(params.pop("split", "cell")),
        block=params.pop("block", 6),
        burn_in=params.pop("burn_in", 0),
    )
    params.pop("shift_sd", None)
    if design.split not in ("cell", "block", "time"):
        raise ConfigError(f"arctic split must be 'cell', 'block' or 'time'; got {design.split!r}.")
    k = design.block
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"arctic block must be an integer >= 1 (cells); got {k!r}.")
    b = design.burn_in
    if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < window:
        raise ConfigError(
            f"arctic burn_in must be an integer in [0, window) = [0, {window}); got {b!r}."
        )
    return design


def forecast_settings(params: dict[str, Any]) -> tuple[int, int, float, float, str]:
    """Pop and check the forecast task's own params: history, horizon, test share, scale,
    scope."""
    history = params.pop("history", 20)
    horizon = params.pop("horizon", 10)
    for name, value in (("history", history), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"arctic-forecast: {name} must be an integer >= 1 (steps); got {value!r}."
            )
    scope = params.pop("scope", "field")
    if scope not in ("field", "cell"):
        raise ConfigError(
            f"arctic-forecast: scope must be 'field' (the plan applies to every cell) or "
            f"'cell' (the unit's cell only); got {scope!r}."
            f"{did_you_mean(str(scope), ['field', 'cell'])}"
        )
    test_fraction = float(params.pop("test_fraction", 0.25))
    return history, horizon, test_fraction, float(params.pop("scale", 1.5)), scope


def arctic_forecast_task(params: dict[str, Any], seed: int, base: Path | None) -> Task:
    from kgcm.config import from_dict
    from kgcm.sequences import split_units, to_sequences
    from kgcm.treatments import Scenario

    k, h, test_fraction, scale, scope = forecast_settings(params)
    arctic = from_dict(ArcticConfig, {**params, "seed": seed}, where="arctic-forecast")
    sim = simulate_arctic(arctic)
    seqs = to_sequences(sim.dataset, window=k + h)
    tr, te = split_units(seqs, test_fraction=test_fraction, seed=seed, by="cell")
    train, test = seqs.subset(tr), seqs.subset(te)
    scenario = Scenario("scale", scale)
    T1 = scenario.apply_from(test.T, k)
    # Y(T0): the factual path is the reference plan, and re-simulating it replays the world
    y0 = test.Y[:, k:]
    if scope == "cell":
        y1 = sim.window_plan_outcomes(T1[:, k:], test.cells, test.starts, k).sithick
    else:
        t_all = sim.dataset["treatment"].values
        y1 = np.empty_like(y0)
        iy, ix = test.cells[:, 0], test.cells[:, 1]
        for start in np.unique(test.starts):  # one regional re-simulation per window start
            first = int(start) + k
            plan = t_all[first:].copy()
            plan[:h] = scenario.apply(plan[:h])
            field_y = sim.plan_outcomes(plan, first).sithick
            units = test.starts == start
            y1[units] = field_y[first : first + h][:, iy[units], ix[units]].T
    truth = y1 - y0
    X_test = test.X_xarray(index=True).isel(step=slice(0, k))
    return Task(
        Y_train=train.Y,
        T_train=train.T,
        X_train=train.X_xarray(index=True),
        X_test=X_test,
        Y_test=test.Y[:, :k],
        T0_test=test.T,
        T1_test=T1,
        true_effect=truth,
        cf_T1=T1,
        cf_Y1=y1,
        cf_start=k,
        history=k,
    )
