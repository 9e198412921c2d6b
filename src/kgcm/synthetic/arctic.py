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

**Potential outcomes.** Under any alternative treatment path :math:`T^1` the same noise draws
give :math:`y(T^1) = y(T^0) - m(T^0) + m(T^1)`, exactly. For windowed units (``window``
steps from ``start``), the intervention applies inside the window and history before it stays
factual (:meth:`ArcticSimulation.window_effects`), which is what a model that sees the window
can be asked about.

Constants are ours (chosen for realistic magnitudes: SIT 0.5-4 m with a winter maximum, SSH
tenths of metres, currents a few cm/s), not fitted to any product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage, signal

from kgcm.errors import ConfigError, InputError, did_you_mean
from kgcm.synthetic._cf import grid_coords
from kgcm.treatments import Scenario, VelocityModulation, speed, velocity_modulation

__all__ = ["ArcticConfig", "ArcticSimulation", "Scenario", "simulate_arctic"]

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
    ssh_anom = (ssh - ssh.mean(axis=0)) / ssh.std(axis=0)
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
    sithick = y_free + _response(treatment, theta, kernel, saturation)
    ds = _dataset(time, x_km, y_km, lat, lon, ssh, u_east, v_north, treatment, sithick, cfg)
    sim = ArcticSimulation(
        dataset=ds,
        latent=latent,
        sensitivity=theta,
        kernel=kernel,
        saturation=saturation,
        config=cfg,
    )
    return sim


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
