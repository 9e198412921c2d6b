r"""``seaice``: a world whose sea ice follows real sea-ice physics (veris), with exact effects.

The ice is simulated by `veris <https://github.com/jpgaertner/veris>`_ (the MITgcm sea-ice
package in Python: EVP rheology, ice-ocean drag from prescribed surface currents, wind stress,
the sea-surface tilt term, advection, ridging, thermodynamic growth and melt), driven by
weather and an ocean that this module builds. Install with ``pip install 'kgcm[physics]'``.

**Domain.** A re-entrant channel (periodic in x, the model's east), ``nx`` × ``ny`` cells of
``dx_km``, closed by coasts along its southern and northern edges and holding an island in the
middle; an f-plane at 80°N. The channel keeps the pack mobile: a closed box of cold, compact
ice locks up within about 20 days, after which no forcing moves it. Output ``lat``/``lon`` label
the cells through the polar stereographic mapping of the ``arctic`` simulator (labels only; the
physics is Cartesian).

**Weather** (daily, vectorised over days and cells; every field is both spatially and
temporally correlated):

- winds (m/s): a zonal background (AR(1) in time) + ``n_cyclones`` cyclones that travel east
  with a lifetime envelope (cyclonic winds with a 20° inflow angle, radius
  ``cyclone_radius_km``, peak ``cyclone_wind``) + smooth AR(1) noise;
- air temperature (K): ``air_temp`` + smooth AR(1) anomalies (``temp_anomaly`` K) + warm air
  carried by the cyclones (+3 K at a cyclone's centre);
- downward longwave (W/m²): :math:`\varepsilon_a \sigma T_a^4` with a cloud emissivity that
  rises under cyclones; specific humidity at 80 % of saturation; no shortwave (polar night)
  unless ``shortwave`` > 0;
- open-water heat loss ``Qnet`` (W/m², up): a bulk formula (longwave, sensible heat) at the
  freezing point of the water (the ocean mixed layer is at freezing: ``theta``).

**Ocean** (prescribed, geostrophic): sea-surface height

.. math:: \eta = \eta_{mean}(y) + \gamma\,\eta_w + \lambda\,\eta_o,

with a cross-channel slope carrying a mean eastward current ``mean_current``, a wind-driven part
:math:`\eta_w` (Ekman pumping: minus the wind-stress curl, low-passed with an e-folding of
``ocean_memory`` days, scaled to ``ssh_scale`` m; γ = ``confounding``) and an independent part
:math:`\eta_o` (smooth AR(1) noise of ``ssh_scale`` m; λ = ``ocean_noise``). Surface currents
are geostrophic, :math:`u = -(g/f)\,\partial_y\eta,\ v = (g/f)\,\partial_x\eta`, on the
model's C-grid faces. The weather thus drives both the ice (wind stress, heat) and the ocean
(γ: confounding); the independent ocean part keeps the treatment varying for any weather
(overlap).

**Treatment**: the knowledge-guided velocity modulation of :mod:`kgcm.treatments` applied to
the ocean forcing (surface speed and SSH at cell centres). **Outcome**: ``sithick``, the
grid-cell mean ice thickness (ice volume per area, m) at the end of each day.

**Counterfactuals** (:class:`OceanScenario`): a scenario changes the ocean forcing from a given
day on; veris re-runs from the factual state of that day with the same weather, so the effect
on thickness per cell and day is exact (the model is deterministic; two runs are bitwise
equal). The ocean is prescribed: ice never feeds back on it (one-way coupling).

Every step calls veris's kernels directly (its routine wrappers cost about a third of the run
time); one model time step is ``dt`` seconds, ``n_evp`` EVP sub-cycles each.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage, signal

from kgcm.errors import ConfigError, InputError, KgcmError, did_you_mean
from kgcm.synthetic._cf import grid_coords
from kgcm.synthetic.tasks import Task, grid_task
from kgcm.treatments import (
    OceanForcing,
    OceanScenario,
    VelocityModulation,
    velocity_modulation,
)

__all__ = [
    "OceanForcing",
    "OceanScenario",
    "SeaIceConfig",
    "SeaIceSimulation",
    "require_physics",
    "seaice_task",
    "simulate_seaice",
]

GRAVITY = 9.81  # m s-2, as veris's settings.gravity
OMEGA = 7.2921e-5  # rad s-1
STEFAN_BOLTZMANN = 5.67e-8  # W m-2 K-4
T_FREEZE = 273.15 - 1.96  # K: veris's freezing point (tempFrz, no salinity dependence)
ATMOSPHERE = ("wind", "tas", "rlds")  # atmospheric fields that can be observed
STATE_FIELDS = (
    "hIceMean",
    "hSnowMean",
    "Area",
    "TSurf",
    "uIce",
    "vIce",
    "sigma1",
    "sigma2",
    "sigma12",
)  # everything one veris step carries to the next


class PhysicsNotInstalledError(KgcmError, ImportError):
    """veris / veros (the ``physics`` extra) are not installed."""


def require_physics() -> dict[str, Any]:
    """Import veris and the kernels this world calls, or say how to install them.

    Returns
    -------
    dict of name -> kernel, plus ``"versions"``: {"veris": ..., "veros": ..., "backend": ...}.
    """
    try:
        veros = importlib.import_module("veros")
        veris = importlib.import_module("veris")
        kernels = {
            "SeaIceMass": importlib.import_module("veris.area_mass").SeaIceMass,
            "AreaWS": importlib.import_module("veris.area_mass").AreaWS,
            "WindForcingXY": importlib.import_module("veris.dynsolver").WindForcingXY,
            "IceVelocities": importlib.import_module("veris.dynsolver").IceVelocities,
            "SeaIceStrength": importlib.import_module("veris.dynamics_routines").SeaIceStrength,
            "Advection": importlib.import_module("veris.advection").Advection,
            "clean_up_advection": importlib.import_module("veris.clean_up").clean_up_advection,
            "ridging": importlib.import_module("veris.clean_up").ridging,
            "Growth": importlib.import_module("veris.growth").Growth,
            "fill_overlap": importlib.import_module("veris.fill_overlap").fill_overlap,
        }
    except ImportError as exc:
        raise PhysicsNotInstalledError(
            f"the 'seaice' world needs the sea-ice model veris (with veros and jax), which is "
            f"not importable here ({exc}). Install the physics extra: "
            f"pip install 'kgcm[physics]' (or pip install veris==0.1.2 veros==1.7.0 jax)."
        ) from exc
    from veros import runtime_settings

    if runtime_settings.backend == "numpy":
        _numpy_logaddexp()
    kernels["versions"] = {
        "veris": str(getattr(veris, "__version__", "unknown")),
        "veros": str(getattr(veros, "__version__", "unknown")),
        "backend": str(runtime_settings.backend),
    }
    return kernels


def _numpy_logaddexp() -> None:
    """On the numpy backend, let veris's one jax call run in numpy.

    ``veris.dynamics_routines`` imports ``jax.numpy`` for a single function, ``logaddexp``
    (basal drag, once per EVP sub-cycle). Called on numpy arrays it dispatches through jax
    (about 30 % of the run time, measured on 16 x 12 cells) and computes in float32.
    ``numpy.logaddexp`` is the same function in float64; only that name is rebound, and only
    when veros runs on numpy. (With the default ``basalDragK2 = 0`` the term is multiplied by
    zero, so the ice is the same either way.)
    """
    import types

    routines = importlib.import_module("veris.dynamics_routines")
    if not isinstance(routines.jnp, types.SimpleNamespace):
        routines.jnp = types.SimpleNamespace(logaddexp=np.logaddexp)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SeaIceConfig:
    """Knobs of the ``seaice`` world (see the module docstring for the physics).

    Attributes
    ----------
    nx, ny : int
        Cells along the channel (periodic) and across it (coasts included).
    days : int
        Length of the daily series.
    start : str
        First date (ISO).
    dx_km : float
        Grid spacing in km.
    dt : float
        Model time step in s (dividing a day).
    n_evp : int
        EVP sub-cycles per step.
    confounding : float
        γ: weight of the wind-driven SSH (and so currents) in the ocean. 0 removes confounding.
    ocean_noise : float
        λ: weight of the independent ocean variability (overlap). Must be > 0.
    observed : tuple of str
        Atmospheric fields put into the dataset (the rest stay hidden): any of ``"wind"``
        (``uas``, ``vas``), ``"tas"``, ``"rlds"``.
    ssh_scale : float
        Spread of each SSH part in m.
    mean_current : float
        Mean eastward geostrophic current along the channel in m/s.
    ocean_memory : float
        e-folding in days of the ocean's response to the wind.
    n_cyclones : int
        Cyclones crossing the domain over the run.
    cyclone_wind, cyclone_radius_km, cyclone_speed_km_day : float
        Peak wind (m/s), radius (km) and eastward travel speed (km/day) of a cyclone.
    background_wind : float
        Spread of the zonal background wind in m/s.
    air_temp, temp_anomaly : float
        Mean air temperature (K) and spread of its anomalies (K).
    shortwave : float
        Downward shortwave in W/m² (0: polar night).
    ice_thickness, ice_concentration : float
        Initial grid-cell mean thickness (m) and concentration (0-1).
    island_radius : float
        Island radius in cells (0: none).
    corr_length : float
        Spatial correlation length of the noise fields in cells.
    memory : float
        Daily AR(1) coefficient of the noise fields.
    seed : int
    modulation : VelocityModulation
        Constants of the knowledge-guided treatment.
    """

    nx: int = 32
    ny: int = 24
    days: int = 60
    start: str = "2015-01-01"
    dx_km: float = 25.0
    dt: float = 3600.0
    n_evp: int = 60
    confounding: float = 1.0
    ocean_noise: float = 1.0
    observed: tuple[str, ...] = ("tas",)
    ssh_scale: float = 0.05
    mean_current: float = 0.03
    ocean_memory: float = 3.0
    n_cyclones: int = 6
    cyclone_wind: float = 12.0
    cyclone_radius_km: float = 250.0
    cyclone_speed_km_day: float = 400.0
    background_wind: float = 3.0
    air_temp: float = 258.0
    temp_anomaly: float = 3.0
    shortwave: float = 0.0
    ice_thickness: float = 0.8
    ice_concentration: float = 0.85
    island_radius: float = 3.0
    corr_length: float = 3.0
    memory: float = 0.8
    seed: int = 0
    modulation: VelocityModulation = field(default_factory=VelocityModulation)

    def __post_init__(self) -> None:
        ints = {"nx": 8, "ny": 6, "days": 1, "n_evp": 1, "n_cyclones": 0, "seed": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"seaice.{name} must be an integer >= {low}; got {value!r}.")
        ranges = {
            "dx_km": (1.0, 200.0),
            "dt": (60.0, 86400.0),
            "confounding": (0.0, 10.0),
            "ocean_noise": (1e-6, 10.0),
            "ssh_scale": (0.0, 1.0),
            "mean_current": (-1.0, 1.0),
            "ocean_memory": (0.1, 100.0),
            "cyclone_wind": (0.0, 40.0),
            "cyclone_radius_km": (10.0, 5000.0),
            "cyclone_speed_km_day": (0.0, 5000.0),
            "background_wind": (0.0, 30.0),
            "air_temp": (200.0, 280.0),
            "temp_anomaly": (0.0, 30.0),
            "shortwave": (0.0, 500.0),
            "ice_thickness": (0.01, 10.0),
            "ice_concentration": (0.01, 1.0),
            "island_radius": (0.0, 1e3),
            "corr_length": (0.0, 1e3),
            "memory": (0.0, 0.999),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not (isinstance(value, int | float) and low <= value <= high):
                raise ConfigError(
                    f"seaice.{name} must be a number in [{low}, {high}]; got {value!r}."
                )
        if abs(86400.0 / self.dt - round(86400.0 / self.dt)) > 1e-9:
            raise ConfigError(f"seaice.dt must divide a day (86400 s); got {self.dt!r}.")
        if isinstance(self.observed, str | list):
            object.__setattr__(
                self,
                "observed",
                (self.observed,) if isinstance(self.observed, str) else tuple(self.observed),
            )
        for name in self.observed:
            if name not in ATMOSPHERE:
                raise ConfigError(
                    f"seaice.observed: unknown atmospheric field {name!r}; expected any of "
                    f"{ATMOSPHERE}.{did_you_mean(str(name), ATMOSPHERE)}"
                )
        try:
            pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"seaice.start must be an ISO date; got {self.start!r}.") from exc
        if isinstance(self.modulation, dict):  # from a config file
            object.__setattr__(self, "modulation", VelocityModulation(**self.modulation))

    @property
    def steps_per_day(self) -> int:
        return round(86400.0 / self.dt)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["observed"] = list(self.observed)
        return d


# --------------------------------------------------------------------------------------------
# Ocean forcing and scenarios


IDENTITY = OceanScenario("scale_currents", 1.0)


# --------------------------------------------------------------------------------------------
# The world: grid, weather, ocean


def _smooth_ar1(
    rng: np.random.Generator, shape: tuple[int, int, int], length: float, rho: float
) -> np.ndarray:
    """Unit-variance noise (days, nx, ny): Gaussian-smoothed over ``length`` cells
    (periodic), stationary AR(1) with coefficient ``rho`` along days."""
    e = rng.standard_normal(shape)
    if length > 0:
        e = ndimage.gaussian_filter(e, sigma=(0, length, length), mode="wrap")
    e /= e.std()
    zi = (e[0] * rho)[None]
    out, _ = signal.lfilter([np.sqrt(1.0 - rho * rho)], [1.0, -rho], e, axis=0, zi=zi)
    return out


@dataclass(frozen=True)
class _World:
    """Grid, masks and all daily forcing of one configuration (model layout (day, x, y))."""

    config: SeaIceConfig
    ocean_mask: np.ndarray  # (nx, ny) 1 ocean, 0 land
    forcing: OceanForcing
    ssh_mean: np.ndarray  # (nx, ny): the run's mean SSH (the 'balanced' scenario keeps it)
    atmosphere: dict[str, np.ndarray]  # name -> (days, nx, ny)

    @property
    def f(self) -> float:
        return 2.0 * OMEGA * np.sin(np.radians(80.0))

    @property
    def dx(self) -> float:
        return self.config.dx_km * 1e3

    def dist2_from_centre_km2(self) -> np.ndarray:
        nx, ny = self.ocean_mask.shape
        x = (np.arange(nx) - (nx - 1) / 2.0) * self.config.dx_km
        y = (np.arange(ny) - (ny - 1) / 2.0) * self.config.dx_km
        return x[:, None] ** 2 + y[None, :] ** 2

    def geostrophic(self, ssh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Geostrophic currents on the C-grid faces from SSH (days, nx, ny), land faces 0."""
        g_f = GRAVITY / self.f
        dx = self.dx
        # centred gradients at cell centres (periodic rolls; land rows close the y wrap)
        deta_dy = (np.roll(ssh, -1, axis=2) - np.roll(ssh, 1, axis=2)) / (2.0 * dx)
        deta_dx = (np.roll(ssh, -1, axis=1) - np.roll(ssh, 1, axis=1)) / (2.0 * dx)
        u_c = -g_f * deta_dy
        v_c = g_f * deta_dx
        # west face: mean of the cell and its western neighbour; south face likewise
        u = 0.5 * (u_c + np.roll(u_c, 1, axis=1))
        v = 0.5 * (v_c + np.roll(v_c, 1, axis=2))
        mask_u = self.ocean_mask * np.roll(self.ocean_mask, 1, axis=0)
        mask_v = self.ocean_mask * np.roll(self.ocean_mask, 1, axis=1)
        return u * mask_u[None], v * mask_v[None]

    def treatment(self, forcing: OceanForcing) -> np.ndarray:
        """Knowledge-guided velocity modulation of an ocean, (days, nx, ny), 0 on land."""
        kg = velocity_modulation(forcing.centre_speed(), forcing.ssh, self.config.modulation)
        return kg * self.ocean_mask[None]


def _build_world(cfg: SeaIceConfig) -> _World:
    rng = np.random.default_rng(cfg.seed)
    nt, nx, ny = cfg.days, cfg.nx, cfg.ny
    dx_km = cfg.dx_km
    shape = (nt, nx, ny)

    # land: coasts along both channel edges and an island in the middle
    x = (np.arange(nx) - (nx - 1) / 2.0) * dx_km
    y = (np.arange(ny) - (ny - 1) / 2.0) * dx_km
    ocean = np.ones((nx, ny))
    ocean[:, 0] = 0.0
    ocean[:, -1] = 0.0
    if cfg.island_radius > 0:
        r2 = (x[:, None] / dx_km) ** 2 + (y[None, :] / dx_km) ** 2
        ocean[r2 <= cfg.island_radius**2] = 0.0

    # --- winds: background + travelling cyclones + smooth noise (days, nx, ny)
    days = np.arange(nt, dtype=np.float64)
    lx = nx * dx_km
    background = cfg.background_wind * _smooth_ar1(rng, (nt, 1, 1), 0.0, 0.9)
    k = cfg.n_cyclones
    birth = rng.uniform(-5.0, max(nt - 1.0, 0.0), size=k)  # day of peak strength
    x0 = rng.uniform(0.0, lx, size=k)
    y0 = rng.uniform(-0.3, 0.3, size=k) * ny * dx_km
    strength = cfg.cyclone_wind * rng.uniform(0.6, 1.0, size=k)
    # positions (days, k), periodic in x: the shortest signed distance to each cell
    cx = x0[None] + cfg.cyclone_speed_km_day * (days[:, None] - birth[None])
    envelope = np.exp(-0.5 * ((days[:, None] - birth[None]) / 3.0) ** 2)  # (days, k)
    xs = (x[None, None, :] + lx / 2.0 - (cx[..., None] - x.min())) % lx - lx / 2.0
    dxk = -xs[..., :, None]  # (days, k, nx, 1): cell minus centre, in km
    dyk = y[None, None, None, :] - y0[None, :, None, None]  # (1, k, 1, ny)
    r = np.hypot(dxk, dyk) + 1e-6
    rr = r / cfg.cyclone_radius_km
    # Rankine-like profile peaking at the radius; counter-clockwise with 20 deg inflow
    profile = rr * np.exp(0.5 * (1.0 - rr**2))
    amp = (strength[None] * envelope)[..., None, None] * profile
    inflow = np.radians(20.0)
    tx, ty = -dyk / r, dxk / r  # counter-clockwise unit tangent
    rx, ry = -dxk / r, -dyk / r  # inward unit radial
    u_cyc = (amp * (np.cos(inflow) * tx + np.sin(inflow) * rx)).sum(axis=1)
    v_cyc = (amp * (np.cos(inflow) * ty + np.sin(inflow) * ry)).sum(axis=1)
    warm = (3.0 * envelope[..., None, None] * np.exp(-0.5 * rr**2)).sum(axis=1)
    cloud = np.clip((envelope[..., None, None] * np.exp(-0.5 * rr**2)).sum(axis=1), 0, 1)
    u_wind = background + u_cyc + 1.5 * _smooth_ar1(rng, shape, cfg.corr_length, cfg.memory)
    v_wind = v_cyc + 1.5 * _smooth_ar1(rng, shape, cfg.corr_length, cfg.memory)

    # --- air temperature, longwave, humidity, open-water heat loss
    tas = (
        cfg.air_temp
        + cfg.temp_anomaly * _smooth_ar1(rng, shape, 2.0 * cfg.corr_length, cfg.memory)
        + warm
    )
    emissivity = 0.72 + 0.2 * cloud
    rlds = emissivity * STEFAN_BOLTZMANN * tas**4
    tc = tas - 273.15
    e_sat = 611.2 * np.exp(22.46 * tc / (272.62 + tc))  # Pa, over ice (Magnus)
    aqh = 0.8 * 0.622 * e_sat / 1e5
    wspeed = np.hypot(u_wind, v_wind)
    rho_air, cp_air, c_h = 1.3, 1005.0, 1.2e-3
    qnet = (
        0.97 * STEFAN_BOLTZMANN * T_FREEZE**4
        - 0.97 * rlds
        + rho_air * cp_air * c_h * np.maximum(wspeed, 1.0) * (T_FREEZE - tas)
        - 0.93 * cfg.shortwave
    )

    # --- ocean: mean slope + wind-driven (Ekman pumping) + independent, geostrophic currents
    f = 2.0 * OMEGA * np.sin(np.radians(80.0))
    ssh_mean_slope = -cfg.mean_current * f / GRAVITY * (y * 1e3)  # u = mean_current
    tau_x = rho_air * 1.2e-3 * wspeed * u_wind
    tau_y = rho_air * 1.2e-3 * wspeed * v_wind
    d = dx_km * 1e3
    curl = (np.roll(tau_y, -1, 1) - np.roll(tau_y, 1, 1)) / (2 * d) - (
        np.roll(tau_x, -1, 2) - np.roll(tau_x, 1, 2)
    ) / (2 * d)
    curl = ndimage.gaussian_filter(curl, sigma=(0, 1.0, 1.0), mode="wrap")
    a = np.exp(-1.0 / cfg.ocean_memory)
    pumped, _ = signal.lfilter([1.0 - a], [1.0, -a], -curl, axis=0, zi=-curl[:1] * a)
    pumped = pumped - pumped.mean()
    eta_w = cfg.ssh_scale * pumped / max(float(pumped.std()), 1e-30)
    eta_o = cfg.ssh_scale * _smooth_ar1(rng, shape, 1.5 * cfg.corr_length, 0.9)
    ssh = ssh_mean_slope[None, None, :] + cfg.confounding * eta_w + cfg.ocean_noise * eta_o
    world = _World(
        config=cfg,
        ocean_mask=ocean,
        forcing=OceanForcing(ssh=ssh, u=np.zeros(shape), v=np.zeros(shape)),
        ssh_mean=ssh.mean(axis=0),
        atmosphere={
            "uWind": u_wind,
            "vWind": v_wind,
            "wSpeed": wspeed,
            "ATemp": tas,
            "LWdown": rlds,
            "aqh": aqh,
            "Qnet": qnet,
        },
    )
    u, v = world.geostrophic(ssh)
    return replace(world, forcing=OceanForcing(ssh=ssh, u=u, v=v))


# --------------------------------------------------------------------------------------------
# veris: state set-up and stepping


class _Model:
    """A veris state for one world, stepped by calling the kernels directly."""

    def __init__(self, world: _World) -> None:
        self.k = require_physics()
        import veris
        from veros.state import get_default_state

        cfg = world.config
        self.world = world
        self.nx, self.ny = cfg.nx, cfg.ny
        state = get_default_state(plugin_interfaces=[_veris_plugin(veris)])
        sett = state.settings
        with sett.unlock():
            sett.nx, sett.ny, sett.nz = cfg.nx, cfg.ny, 1
            sett.deltatTherm = sett.deltatDyn = cfg.dt
            sett.recip_deltatTherm = sett.recip_deltatDyn = 1.0 / cfg.dt
            sett.nEVPsteps = cfg.n_evp
            sett.veros_fill = False  # no veros grid: fill halos periodically (veris's own)
            sett.computeEvpResidual = False
            sett.useEVP, sett.useFreedrift = True, False
        state.initialize_variables()
        self.state = state
        vs = state.variables
        ocean = world.ocean_mask
        mask_u = ocean * np.roll(ocean, 1, axis=0)
        mask_v = ocean * np.roll(ocean, 1, axis=1)
        self.mask_u, self.mask_v = self.pad(mask_u), self.pad(mask_v)
        dx = cfg.dx_km * 1e3
        ones = np.ones((cfg.nx + 4, cfg.ny + 4))
        with vs.unlock():
            vs.maskInC = vs.iceMask = self.pad(ocean)
            vs.maskInU = vs.iceMaskU = self.mask_u
            vs.maskInV = vs.iceMaskV = self.mask_v
            vs.fCori = ones * world.f
            vs.R_low = -1000.0 * ones
            for name in ("dxC", "dyC", "dxG", "dyG", "dxU", "dyU", "dxV", "dyV"):
                setattr(vs, name, dx * ones)
                setattr(vs, "recip_" + name, ones / dx)
            for name in ("rA", "rAu", "rAv", "rAz"):
                setattr(vs, name, dx * dx * ones)
                setattr(vs, "recip_" + name, ones / (dx * dx))
            vs.theta = T_FREEZE * ones
            vs.ocSalt = 34.7 * ones
            vs.SWdown = cfg.shortwave * ones
        self.set_state(self.initial_state())

    def pad(self, a: np.ndarray) -> np.ndarray:
        """(nx, ny) interior -> (nx + 4, ny + 4) with a periodic 2-cell halo."""
        return np.pad(a, 2, mode="wrap")

    def initial_state(self) -> dict[str, np.ndarray]:
        cfg = self.world.config
        ice = self.pad(self.world.ocean_mask)
        zeros = np.zeros_like(ice)
        return {
            "hIceMean": cfg.ice_thickness * ice,
            "hSnowMean": 0.1 * cfg.ice_thickness * ice,
            "Area": cfg.ice_concentration * ice,
            "TSurf": np.full_like(ice, 260.0),  # veris's default 0 K gives NaNs in Growth
            "uIce": zeros,
            "vIce": zeros,
            "sigma1": zeros,
            "sigma2": zeros,
            "sigma12": zeros,
        }

    def get_state(self) -> dict[str, np.ndarray]:
        vs = self.state.variables
        return {name: np.array(getattr(vs, name), dtype=np.float64) for name in STATE_FIELDS}

    def set_state(self, values: dict[str, np.ndarray]) -> None:
        vs = self.state.variables
        with vs.unlock():
            for name in STATE_FIELDS:
                setattr(vs, name, np.asarray(values[name], dtype=np.float64))

    def set_forcing(self, day: int, ocean: OceanForcing) -> None:
        vs = self.state.variables
        atm = self.world.atmosphere
        with vs.unlock():
            for name, values in atm.items():
                setattr(vs, name, self.pad(values[day]))
            vs.ssh_an = self.pad(ocean.ssh[day])
            vs.uOcean = self.pad(ocean.u[day]) * self.mask_u
            vs.vOcean = self.pad(ocean.v[day]) * self.mask_v

    def run_day(self) -> None:
        """One day of model steps (the loop over time is the integration itself)."""
        k, state = self.k, self.state
        vs = state.variables
        for _ in range(self.world.config.steps_per_day):
            with vs.unlock():
                vs.SeaIceMassC, vs.SeaIceMassU, vs.SeaIceMassV = k["SeaIceMass"](state)
                vs.AreaW, vs.AreaS = k["AreaWS"](state)
                vs.WindForcingX, vs.WindForcingY = k["WindForcingXY"](state)
                vs.SeaIceStrength = k["SeaIceStrength"](state)
                vs.uIce, vs.vIce, vs.sigma1, vs.sigma2, vs.sigma12 = k["IceVelocities"](state)
                vs.hIceMean, vs.hSnowMean, vs.Area = k["Advection"](state)
                (
                    vs.hIceMean,
                    vs.hSnowMean,
                    vs.Area,
                    vs.TSurf,
                    vs.os_hIceMean,
                    vs.os_hSnowMean,
                ) = k["clean_up_advection"](state)
                vs.Area = k["ridging"](state)
                out = k["Growth"](state)
                # keep the ice fields; Qnet/Qsw out of Growth are fluxes into an ocean
                # model (there is none: the ocean is prescribed)
                vs.hIceMean, vs.hSnowMean, vs.Area, vs.TSurf = out[0], out[1], out[2], out[3]
                vs.SeaIceLoad, vs.recip_hIceMean = out[8], out[10]
                vs.hIceMean = k["fill_overlap"](state, vs.hIceMean)
                vs.hSnowMean = k["fill_overlap"](state, vs.hSnowMean)
                vs.Area = k["fill_overlap"](state, vs.Area)

    def outputs(self) -> dict[str, np.ndarray]:
        """Daily output fields on the interior (nx, ny)."""
        vs = self.state.variables
        inner = (slice(2, -2), slice(2, -2))
        u, v = np.asarray(vs.uIce), np.asarray(vs.vIce)
        uc = 0.5 * (u + np.roll(u, -1, axis=0))
        vc = 0.5 * (v + np.roll(v, -1, axis=1))
        return {
            "sithick": np.asarray(vs.hIceMean)[inner],
            "siconc": np.asarray(vs.Area)[inner],
            "siu": uc[inner],
            "siv": vc[inner],
        }


def _veris_plugin(veris_module: Any) -> Any:
    from veros.plugins import load_plugin

    return load_plugin(veris_module)


def _run(
    model: _Model,
    ocean: OceanForcing,
    first_day: int,
    n_days: int,
    state: dict[str, np.ndarray],
) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Run ``n_days`` from ``first_day`` starting at ``state``; yields (day, outputs, state)
    at the end of each day."""
    model.set_state(state)
    for day in range(first_day, first_day + n_days):
        model.set_forcing(day, ocean)
        model.run_day()
        yield day, model.outputs(), model.get_state()


# --------------------------------------------------------------------------------------------
# Cache: a Zarr group per world, keyed by a fingerprint


def fingerprint(cfg: SeaIceConfig, versions: dict[str, str]) -> str:
    """Hash of the settings and the versions of veris, veros, the backend and kgcm."""
    from kgcm import __version__

    payload = json.dumps(
        {"config": cfg.to_dict(), "versions": versions, "kgcm": __version__},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Store:
    """A world's Zarr group: factual fields and daily states, and scenario branches.

    Writes are per day; the number of finished days is written after the day's arrays, so an
    interrupted run resumes from the last finished day (re-writing a day is harmless).
    """

    def __init__(self, path: Path | None, cfg: SeaIceConfig, model_shape: tuple[int, int]):
        import zarr

        self.path = path
        self.cfg = cfg
        self.model_shape = model_shape
        if path is None:
            self.group = zarr.group(store=zarr.storage.MemoryStore())
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.group = zarr.open_group(str(path), mode="a")
            self.group.attrs.setdefault("kgcm_config", json.dumps(cfg.to_dict(), default=str))

    def _series(self, name: str, group: Any) -> tuple[Any, Any]:
        cfg = self.cfg
        days = cfg.days
        out_shape = (days, cfg.nx, cfg.ny)
        outs = {}
        for var in ("sithick", "siconc", "siu", "siv"):
            outs[var] = group.require_array(
                var, shape=out_shape, chunks=(1, cfg.nx, cfg.ny), dtype="f8", fill_value=np.nan
            )
        states = {}
        for var in STATE_FIELDS:
            states[var] = group.require_array(
                "state_" + var,
                shape=(days, *self.model_shape),
                chunks=(1, *self.model_shape),
                dtype="f8",
                fill_value=np.nan,
            )
        return outs, states

    def run(
        self,
        model: _Model,
        name: str,
        ocean: OceanForcing,
        first_day: int,
        n_days: int,
        initial: Callable[[], dict[str, np.ndarray]],
        progress: Callable[[str, int, int], None] | None,
    ) -> dict[str, np.ndarray]:
        """Run (or resume) a series ``name`` over days [first_day, first_day + n_days)."""
        group = self.group.require_group(name)
        outs, states = self._series(name, group)
        done = int(group.attrs.get("days_done", 0))
        if done < n_days:
            state = (
                initial()
                if done == 0
                else {v: states[v][first_day + done - 1] for v in STATE_FIELDS}
            )
            started = time.perf_counter()
            for day, out, st in _run(model, ocean, first_day + done, n_days - done, state):
                for v, a in out.items():
                    outs[v][day] = a
                for v, a in st.items():
                    states[v][day] = a
                group.attrs["days_done"] = day - first_day + 1
                if progress is not None:
                    progress(name, day - first_day + 1, n_days)
            group.attrs["seconds"] = float(group.attrs.get("seconds", 0.0)) + (
                time.perf_counter() - started
            )
        sl = slice(first_day, first_day + n_days)
        return {v: np.asarray(outs[v][sl]) for v in outs}

    def state_at_end_of(self, day: int) -> dict[str, np.ndarray]:
        group = self.group["factual"]
        return {v: np.asarray(group["state_" + v][day]) for v in STATE_FIELDS}


def _default_progress(name: str, done: int, total: int) -> None:
    if done == total or done % max(1, total // 10) == 0:
        print(f"seaice {name}: day {done}/{total}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The simulation


@dataclass
class SeaIceSimulation:
    """A simulated world: observables, its ocean, and exact counterfactual re-runs.

    Attributes
    ----------
    dataset : xarray.Dataset on (time, y, x)
        CF observables: ``sithick`` (grid-cell mean, m), ``siconc``, ``zos``, ``uo``, ``vo``
        (cell centres), ``treatment`` and the observed atmospheric fields (``uas``, ``vas``,
        ``tas``, ``rlds`` as chosen by ``observed``); 2-D ``lat``/``lon``. Land cells are NaN.
    config : SeaIceConfig
    versions : dict of str
    seconds : float
        Model time of the factual run (s), summed over resumed pieces.
    """

    dataset: xr.Dataset
    config: SeaIceConfig
    versions: dict[str, str]
    seconds: float
    sithick: np.ndarray = field(repr=False)  # (time, y, x) float64, NaN on land
    _world: _World = field(repr=False)
    _model: _Model = field(repr=False)
    _store: _Store = field(repr=False)
    _progress: Callable[[str, int, int], None] | None = field(repr=False, default=None)

    @property
    def ocean_mask(self) -> np.ndarray:
        """(y, x) 1 for ocean, 0 for land."""
        return self._world.ocean_mask.T

    def scenario_forcing(self, scenario: OceanScenario, start: int = 0) -> OceanForcing:
        """The ocean under ``scenario`` from day ``start`` on (factual before), model layout."""
        factual = self._world.forcing
        changed = scenario.apply(factual, self._world)
        keep = np.arange(self.config.days) < start
        return OceanForcing(
            *(
                np.where(keep[:, None, None], getattr(factual, n), getattr(changed, n))
                for n in ("ssh", "u", "v")
            )
        )

    def treatment(self, scenario: OceanScenario, start: int = 0) -> np.ndarray:
        """Treatment (time, y, x) under ``scenario`` from day ``start`` on."""
        return self._world.treatment(self.scenario_forcing(scenario, start)).transpose(0, 2, 1)

    def rerun(self, scenario: OceanScenario, start: int, n_days: int) -> dict[str, np.ndarray]:
        """Ice under ``scenario`` on days [start, start + n_days), re-run from the factual
        state at the start of day ``start`` with the same weather (cached).

        Returns
        -------
        dict of ``sithick``, ``siconc``, ``siu``, ``siv``: ndarrays (n_days, y, x), float64,
        NaN on land.
        """
        cfg = self.config
        if not (0 <= start and n_days >= 1 and start + n_days <= cfg.days):
            raise InputError(
                f"re-run days [{start}, {start + n_days}) must lie within [0, {cfg.days})."
            )
        ocean = self.scenario_forcing(scenario, start)

        def initial() -> dict[str, np.ndarray]:
            if start == 0:
                return self._model.initial_state()
            return self._store.state_at_end_of(start - 1)

        out = self._store.run(
            self._model,
            f"branch/{scenario.key}/{start}-{n_days}",
            ocean,
            start,
            n_days,
            initial,
            self._progress,
        )
        land = self.ocean_mask[None] == 0
        return {k: np.where(land, np.nan, a.transpose(0, 2, 1)) for k, a in out.items()}

    def effect(self, scenario: OceanScenario, start: int = 0, n_days: int | None = None):
        """Exact effect on SIT (n_days, y, x): scenario minus factual, NaN on land."""
        n = self.config.days - start if n_days is None else n_days
        factual = self.sithick[start : start + n]
        return self.rerun(scenario, start, n)["sithick"] - factual

    def window_effects(
        self,
        cells: np.ndarray,
        starts: np.ndarray,
        window: int,
        scenario: OceanScenario,
        *,
        offset: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact effects and treatments for windowed units.

        Unit ``i`` is cell ``cells[i] = (iy, ix)`` over days ``starts[i] .. +window-1``. The
        scenario acts on the whole ocean from day ``starts[i] + offset`` to the window's end;
        before it, everything is factual. One re-run per distinct start.

        Returns
        -------
        (effect, T1) : ndarrays (n_units, window): SIT(scenario) − SIT(factual), and the
        treatment under the scenario.
        """
        n = len(starts)
        effect = np.zeros((n, window))
        t1 = np.zeros((n, window))
        iy, ix = cells[:, 0], cells[:, 1]
        for s in np.unique(starts):  # one physics re-run per window start
            sel = np.flatnonzero(starts == s)
            first = int(s) + offset
            eff = np.zeros((window, *self.ocean_mask.shape))
            eff[offset:] = self.effect(scenario, first, window - offset)
            treat = self.treatment(scenario, first)[int(s) : int(s) + window]
            effect[sel] = eff[:, iy[sel], ix[sel]].T
            t1[sel] = treat[:, iy[sel], ix[sel]].T
        return effect, t1


def simulate_seaice(
    config: SeaIceConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[str, int, int], None] = True,
    **overrides: Any,
) -> SeaIceSimulation:
    """Generate (or load from the cache) a ``seaice`` world.

    Parameters
    ----------
    config : SeaIceConfig, optional
        Defaults when omitted; keyword ``overrides`` replace single fields (``nx=16``).
    cache_dir : path, optional
        Where worlds are kept as Zarr (``seaice-<fingerprint>.zarr``); a world already there
        is loaded, a partial one resumes. None: in memory only.
    progress : bool or callable(name, days_done, days_total)
        Progress messages on stderr (True), none (False) or your own callback.

    Returns
    -------
    SeaIceSimulation
    """
    if overrides:
        base = (config or SeaIceConfig()).to_dict()
        unknown = set(overrides) - set(base)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"unknown seaice world setting {key!r}; expected one of {sorted(base)}."
                f"{did_you_mean(key, base)}"
            )
        base["modulation"] = (config or SeaIceConfig()).modulation
        config = SeaIceConfig(**{**base, **overrides})
    cfg = config or SeaIceConfig()
    kernels = require_physics()
    versions = kernels["versions"]
    world = _build_world(cfg)
    model = _Model(world)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"seaice-{fingerprint(cfg, versions)}.zarr"
    store = _Store(path, cfg, (cfg.nx + 4, cfg.ny + 4))
    callback = _default_progress if progress is True else (progress or None)
    out = store.run(model, "factual", world.forcing, 0, cfg.days, model.initial_state, callback)
    ds = _dataset(world, out, versions)
    land = world.ocean_mask.T[None] == 0
    return SeaIceSimulation(
        dataset=ds,
        config=cfg,
        versions=versions,
        sithick=np.where(land, np.nan, out["sithick"].transpose(0, 2, 1)),
        seconds=float(store.group["factual"].attrs.get("seconds", 0.0)),
        _world=world,
        _model=model,
        _store=store,
        _progress=callback,
    )


def _dataset(world: _World, out: dict[str, np.ndarray], versions: dict[str, str]) -> xr.Dataset:
    from kgcm.synthetic.arctic import _polar_grid

    cfg = world.config
    time_index = pd.date_range(cfg.start, periods=cfg.days, freq="D")
    x_km, y_km, lat, lon = _polar_grid(cfg.ny, cfg.nx, cfg.dx_km)
    land = world.ocean_mask.T[None] == 0  # (1, y, x)

    def grid(a: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """(days, x, y) model layout -> (time, y, x), NaN on land."""
        return np.where(land, np.nan, a.transpose(0, 2, 1)).astype(dtype)

    f = world.forcing
    uc = 0.5 * (f.u + np.roll(f.u, -1, axis=1))
    vc = 0.5 * (f.v + np.roll(f.v, -1, axis=2))
    atm = world.atmosphere
    fields: dict[str, tuple[np.ndarray, dict[str, str]]] = {
        "sithick": (
            grid(out["sithick"]),
            {
                "standard_name": "sea_ice_thickness",
                "units": "m",
                "long_name": "sea-ice thickness, grid-cell mean (ice volume per area; veris)",
            },
        ),
        "siconc": (
            grid(out["siconc"]),
            {"standard_name": "sea_ice_area_fraction", "units": "1", "long_name": "veris"},
        ),
        "siu": (
            grid(out["siu"]),
            {"standard_name": "sea_ice_x_velocity", "units": "m s-1", "long_name": "veris"},
        ),
        "siv": (
            grid(out["siv"]),
            {"standard_name": "sea_ice_y_velocity", "units": "m s-1", "long_name": "veris"},
        ),
        "zos": (
            grid(f.ssh),
            {"standard_name": "sea_surface_height_above_geoid", "units": "m"},
        ),
        "uo": (grid(uc), {"standard_name": "eastward_sea_water_velocity", "units": "m s-1"}),
        "vo": (grid(vc), {"standard_name": "northward_sea_water_velocity", "units": "m s-1"}),
        "treatment": (
            grid(world.treatment(f), np.float64),
            {"units": "m s-1", "long_name": "knowledge-guided velocity modulation of the ocean"},
        ),
    }
    if "wind" in cfg.observed:
        fields["uas"] = (grid(atm["uWind"]), {"standard_name": "eastward_wind", "units": "m s-1"})
        fields["vas"] = (
            grid(atm["vWind"]),
            {"standard_name": "northward_wind", "units": "m s-1"},
        )
    if "tas" in cfg.observed:
        fields["tas"] = (grid(atm["ATemp"]), {"standard_name": "air_temperature", "units": "K"})
    if "rlds" in cfg.observed:
        fields["rlds"] = (
            grid(atm["LWdown"]),
            {"standard_name": "surface_downwelling_longwave_flux_in_air", "units": "W m-2"},
        )
    dims = ("time", "y", "x")
    ds = xr.Dataset(
        {name: (dims, values, attrs) for name, (values, attrs) in fields.items()},
        coords=grid_coords(time_index, y_km, x_km, lat, lon),
        attrs={
            "Conventions": "CF-1.8",
            "title": "kgcm seaice world: sea ice simulated by veris (synthetic; not observations)",
            "source": f"kgcm.synthetic.seaice with veris {versions['veris']}, veros "
            f"{versions['veros']} ({versions['backend']} backend)",
            "kgcm_config": json.dumps(cfg.to_dict(), default=str),
        },
    )
    for name in fields:
        ds[name].attrs["coordinates"] = "lat lon"
    return ds


def seaice_task_settings(
    params: dict[str, Any], seed: int, base: Path | None
) -> tuple[SeaIceConfig, int, float, OceanScenario, Path]:
    """The world config, window, test fraction, scenario and cache folder of a ``seaice``
    task's params (a benchmark dataset's ``params``); unknown keys are refused by name."""
    from kgcm.config import from_dict

    params = dict(params)
    window = int(params.pop("window", 30))
    test_fraction = float(params.pop("test_fraction", 0.25))
    scenario = OceanScenario(
        str(params.pop("scenario", "scale_currents")), float(params.pop("scale", 1.5))
    )
    cache = Path(params.pop("cache_dir", "runs/worlds"))
    if not cache.is_absolute() and base is not None:
        cache = base / cache
    cfg = from_dict(SeaIceConfig, {**params, "seed": seed}, where="seaice")
    return cfg, window, test_fraction, scenario, cache


def seaice_task(params: dict[str, Any], seed: int, base: Path | None) -> Task:
    from kgcm.sequences import split_units, to_sequences

    cfg, window, test_fraction, scenario, cache = seaice_task_settings(params, seed, base)
    sim = simulate_seaice(cfg, cache_dir=cache)
    # the covariates are the treatment's confounders, the observed atmosphere; never the ocean
    # fields the treatment is computed from (with them it is a function of the covariates'
    # history and the effect is not identified)
    atmosphere = [v for v in ("uas", "vas", "tas", "rlds") if v in sim.dataset]
    seqs = to_sequences(
        sim.dataset,
        window=window,
        covariates=tuple(atmosphere),
        drop_incomplete=True,  # land cells
    )
    tr, te = split_units(seqs, test_fraction=test_fraction, seed=seed, by="cell")
    train, test = seqs.subset(tr), seqs.subset(te)
    truth, T1 = sim.window_effects(test.cells, test.starts, window, scenario)
    start = window // 2
    cf_effect, cf_T1 = sim.window_effects(test.cells, test.starts, window, scenario, offset=start)
    return grid_task(train, test, T1, truth, cf_T1, cf_effect, start)
