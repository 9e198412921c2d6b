r"""Knowledge-guided treatments and scenarios: pure, vectorised functions.

The treatment of kgcm is the *velocity modulation* of the paper (arXiv 2601.17647, v1): a
smoothed surface-velocity signal amplified by a sigmoid gate that opens on sea-surface-height
(SSH) transitions,

.. math::

    \Delta h_t = h_t - h_{t-1}, \qquad
    v_t = \mathrm{MA}_w(\lVert u \rVert)_t \,\bigl(1 + \alpha\,\sigma(k\,(\Delta h_t - \tau))\bigr),

with window :math:`w`, slope :math:`k` (1/m), centre :math:`\tau` (m) and gain :math:`\alpha`.
The paper does not publish its constants; :class:`VelocityModulation` holds ours (documented
there) and every one is a parameter.

Everything that says what a treatment is, or what the counterfactual path is, lives here once:
:class:`VelocityModulation` (the modulation's constants), :class:`TreatmentSpec` (how
``kgcm prepare`` builds a treatment: a kind plus those same constants), :class:`Scenario` (a
counterfactual treatment path ``T1 = f(T0)``, used by the demo, ``kgcm fit``/``kgcm effect``,
the dose-response and the ``arctic`` simulator) and :class:`OceanScenario` (a counterfactual
ocean, for the ``seaice`` world whose treatment follows from the ocean through the physics).

The paper's notebooks use two further recipes, reproduced exactly as named presets
(:data:`RECIPES`, :func:`control_treatment`, :func:`forcing_scenario`).

Every function here works on numpy arrays (along ``axis``, default the first: time) and on
xarray DataArrays along a named dimension (default ``"time"``), gridded fields included, with
no Python loop over cells or steps. DataArrays keep their coordinates; dask-backed arrays stay
lazy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import xarray as xr

from kgcm.errors import ConfigError, InputError, did_you_mean

__all__ = [
    "RECIPES",
    "OceanForcing",
    "OceanScenario",
    "PaperRecipe",
    "Scenario",
    "TreatmentSpec",
    "VelocityModulation",
    "control_treatment",
    "forcing_scenario",
    "lag",
    "moving_average",
    "sigmoid",
    "speed",
    "ssh_increment",
    "velocity_modulation",
]

ArrayLike = TypeVar("ArrayLike", np.ndarray, xr.DataArray)
Fill = float | Literal["edge", "nan"]


def sigmoid(x: ArrayLike) -> ArrayLike:
    """Logistic function ``1 / (1 + exp(-x))``, overflow-free (written with ``tanh``)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def speed(u: ArrayLike, v: ArrayLike) -> ArrayLike:
    """Speed ``sqrt(u**2 + v**2)`` of a vector field (rotation-invariant)."""
    return np.hypot(u, v)


# --------------------------------------------------------------------------------------------
# numpy kernels along axis 0; the public functions move the wanted axis there and back.


def _moving_average_kernel(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps, ``min_periods=1``, NaN-skipping (as pandas)."""
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    valid = ~np.isnan(x)
    zeros = np.zeros((1, *x.shape[1:]), dtype=x.dtype)
    csum = np.concatenate([zeros, np.cumsum(np.where(valid, x, 0), axis=0)], axis=0)
    ccount = np.concatenate(
        [zeros.astype(np.int64), np.cumsum(valid, axis=0, dtype=np.int64)], axis=0
    )
    n = x.shape[0]
    upper = np.arange(1, n + 1)
    lower = np.maximum(upper - window, 0)
    total = csum[upper] - csum[lower]
    count = ccount[upper] - ccount[lower]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return np.where(count > 0, out, np.nan).astype(x.dtype, copy=False)


def _increment_kernel(x: np.ndarray, first: Fill) -> np.ndarray:
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    out = np.empty_like(x)
    out[1:] = x[1:] - x[:-1]
    out[:1] = _fill_value(first, x[:1] * 0, ok_edge=False)
    return out


def _lag_kernel(x: np.ndarray, steps: int, fill: Fill) -> np.ndarray:
    x = np.asarray(x)
    if steps == 0:
        return x.copy()
    if not np.issubdtype(x.dtype, np.floating) and fill == "nan":
        x = x.astype(np.float64)
    out = np.empty_like(x)
    n = x.shape[0]
    k = min(steps, n)
    out[k:] = x[: n - k]
    head = out[:k]
    if fill == "edge":
        head[...] = x[:1]
    else:
        head[...] = _fill_value(fill, head, ok_edge=False)
    return out


def _fill_value(fill: Fill, like: np.ndarray, *, ok_edge: bool) -> Any:
    if fill == "nan":
        return np.nan
    if isinstance(fill, int | float) and not isinstance(fill, bool):
        return fill
    allowed = "'nan' or a number" + (" or 'edge'" if ok_edge else "")
    raise InputError(f"fill must be {allowed}; got {fill!r}.")


def _apply(
    kernel: Callable[..., np.ndarray],
    x: ArrayLike,
    axis: int,
    dim: str,
    *,
    depth: int,
    **kwargs: Any,
) -> ArrayLike:
    """Run a kernel along time for numpy (``axis``) or xarray (``dim``) input.

    ``depth`` is how many past steps one output step needs (the kernels are trailing). For
    dask-backed input chunked along time, blocks are extended by ``depth`` steps from their
    neighbours (``dask.array.map_overlap``), so a long record never has to sit in one chunk.
    """
    if isinstance(x, xr.DataArray):
        if dim not in x.dims:
            raise InputError(
                f"DataArray {x.name!r} has dims {tuple(x.dims)}; expected a {dim!r} dimension."
                f" Pass dim=<name of the time dimension>."
            )
        if x.chunks is not None and len(x.chunks[x.get_axis_num(dim)]) > 1:
            return _apply_overlapping(kernel, x, dim, depth=depth, **kwargs)

        def along_last(a: np.ndarray) -> np.ndarray:
            return np.moveaxis(kernel(np.moveaxis(a, -1, 0), **kwargs), 0, -1)

        out = xr.apply_ufunc(
            along_last,
            x,
            input_core_dims=[[dim]],
            output_core_dims=[[dim]],
            dask="parallelized",
            output_dtypes=[np.result_type(x.dtype, np.float32)],
            dask_gufunc_kwargs={"allow_rechunk": True},
            keep_attrs=True,
        )
        return out.transpose(*x.dims)
    if isinstance(x, np.ndarray | list | tuple | float | int):
        a = np.asarray(x)
        if a.ndim == 0:
            raise InputError("expected an array with a time axis; got a scalar.")
        return np.moveaxis(kernel(np.moveaxis(a, axis, 0), **kwargs), 0, axis)
    raise InputError(f"expected a numpy array or xarray.DataArray; got {type(x).__name__}.")


def _apply_overlapping(
    kernel: Callable[..., np.ndarray], x: xr.DataArray, dim: str, *, depth: int, **kwargs: Any
) -> xr.DataArray:
    ax = x.get_axis_num(dim)
    data = x.data
    if depth > 0 and min(data.chunks[ax]) < depth:
        data = data.rechunk({ax: max(depth, max(data.chunks[ax]))})

    def block(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(kernel(np.moveaxis(a, ax, 0), **kwargs), 0, ax)

    dtype = np.result_type(x.dtype, np.float32)
    if depth == 0:
        out = data.map_blocks(block, dtype=dtype)
    else:
        out = data.map_overlap(block, depth={ax: depth}, boundary="none", trim=True, dtype=dtype)
    return x.copy(data=out)


def moving_average(x: ArrayLike, window: int, *, axis: int = 0, dim: str = "time") -> ArrayLike:
    """Trailing moving average ``MA_w(x)_t = mean(x[t-w+1 .. t])`` with ``min_periods=1``.

    The first ``w-1`` steps average what is there; NaNs are skipped and a step whose whole
    window is NaN stays NaN (the convention of ``pandas.Series.rolling(w, min_periods=1)``).

    Parameters
    ----------
    x : array (..., n_steps, ...) or DataArray with dimension ``dim``
    window : int, at least 1
    """
    if not isinstance(window, int | np.integer) or isinstance(window, bool) or window < 1:
        raise InputError(f"window must be an integer >= 1; got {window!r}.")
    return _apply(_moving_average_kernel, x, axis, dim, depth=int(window) - 1, window=int(window))


def ssh_increment(
    h: ArrayLike, *, first: Fill = 0.0, axis: int = 0, dim: str = "time"
) -> ArrayLike:
    """SSH increment ``Δh_t = h_t - h_{t-1}`` (m per step), same length as ``h``.

    The first step has no predecessor; it is filled with ``first`` (0: no transition, the
    default; ``"nan"`` to mark it missing).
    """
    return _apply(_increment_kernel, h, axis, dim, depth=1, first=first)


def lag(
    x: ArrayLike, steps: int, *, fill: Fill = "edge", axis: int = 0, dim: str = "time"
) -> ArrayLike:
    """Treatment lag: ``out_t = x_{t-steps}``, same length, the first ``steps`` filled.

    ``fill`` is ``"edge"`` (repeat the first value, the default), ``"nan"`` or a number.
    """
    if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or steps < 0:
        raise InputError(f"steps must be an integer >= 0; got {steps!r}.")
    return _apply(_lag_kernel, x, axis, dim, depth=int(steps), steps=int(steps), fill=fill)


@dataclass(frozen=True)
class VelocityModulation:
    """Constants of the knowledge-guided velocity modulation.

    Attributes
    ----------
    window : int
        Trailing moving-average window ``w`` in steps (5 days, as the notebooks' ``MA_5``).
    slope : float
        Gate slope ``k`` in 1/m. 200/m puts a ±1 cm/day SSH change at σ = 0.12 / 0.88,
        the scale of daily Arctic SSH changes; the paper does not publish its value.
    centre : float
        Gate centre ``τ`` in m (0: the gate is half open when SSH is steady).
    gain : float
        Gain ``α`` (dimensionless): the velocity signal grows by up to ``1 + α``.
    lag : int
        Treatment lag in steps applied to the result (0: none).
    """

    window: int = 5
    slope: float = 200.0
    centre: float = 0.0
    gain: float = 1.0
    lag: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window must be an integer >= 1; got {self.window!r}.")
        if not isinstance(self.lag, int) or self.lag < 0:
            raise ConfigError(f"lag must be an integer >= 0; got {self.lag!r}.")
        for name in ("slope", "centre", "gain"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite number; got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def velocity_modulation(
    velocity_speed: ArrayLike,
    ssh: ArrayLike,
    params: VelocityModulation | None = None,
    *,
    axis: int = 0,
    dim: str = "time",
    **overrides: Any,
) -> ArrayLike:
    r"""Knowledge-guided treatment ``v_t = MA_w(speed)_t (1 + α σ(k (Δh_t − τ)))``, lagged.

    Parameters
    ----------
    velocity_speed : array (n_steps, ...) or DataArray, m/s
        Surface-velocity speed (use :func:`speed` on east/north components).
    ssh : same shape, m
        Sea-surface height.
    params : VelocityModulation, optional
        Constants; keyword ``overrides`` replace single fields (``window=7``).

    Returns
    -------
    Treatment of the same shape, m/s. With ``lag > 0`` the first ``lag`` steps repeat the
    first value (see :func:`lag`).
    """
    p = _params(params, overrides)
    smoothed = moving_average(velocity_speed, p.window, axis=axis, dim=dim)
    gate = sigmoid(p.slope * (ssh_increment(ssh, axis=axis, dim=dim) - p.centre))
    out = smoothed * (1.0 + p.gain * gate)
    if p.lag:
        out = lag(out, p.lag, axis=axis, dim=dim)
    if isinstance(out, xr.DataArray):
        out = out.rename("treatment").assign_attrs(
            long_name="knowledge-guided velocity modulation",
            units="m s-1",
            **{f"kgcm_{k}": v for k, v in p.to_dict().items()},
        )
    return out


def _params(params: VelocityModulation | None, overrides: dict[str, Any]) -> VelocityModulation:
    base = params or VelocityModulation()
    fields = base.to_dict()
    for key in overrides:
        if key not in fields:
            raise ConfigError(
                f"unknown velocity-modulation parameter {key!r}; expected one of "
                f"{sorted(fields)}.{did_you_mean(key, fields)}"
            )
    return VelocityModulation(**{**fields, **overrides}) if overrides else base


@dataclass(frozen=True)
class TreatmentSpec(VelocityModulation):
    """How ``kgcm prepare`` builds the treatment: a kind, its inputs, and the modulation's
    constants (inherited from :class:`VelocityModulation`, so they are declared and checked
    once; ``window`` and ``lag`` apply to every kind).

    ``kind``:

    - ``"velocity-modulation"``: ``v_t = MA_w(speed)_t (1 + α σ(k (Δh_t − τ)))`` from the ocean
      (``velocity = "ocean"``: uo/vo) or ice (``"ice"``: usi/vsi) velocity and SSH ``ssh``;
    - ``"column"``: the variable ``column`` as it is (e.g. longwave radiation in a table);
    - ``"moving-average"``: ``MA_w(column)``;
    - ``"none"``: no treatment (a store of covariates only).

    ``lag`` shifts the result by that many steps in every kind.
    """

    kind: str = "velocity-modulation"
    velocity: str = "ocean"
    ssh: str = "zos"
    column: str = ""

    def __post_init__(self) -> None:
        kinds = ("velocity-modulation", "column", "moving-average", "none")
        if self.kind not in kinds:
            raise ConfigError(f"treatment.kind must be one of {kinds}; got {self.kind!r}.")
        if self.velocity not in ("ocean", "ice"):
            raise ConfigError(
                f"treatment.velocity must be 'ocean' or 'ice'; got {self.velocity!r}."
            )
        if self.kind in ("column", "moving-average") and not self.column:
            raise ConfigError(f"treatment.kind = {self.kind!r} needs treatment.column = '<name>'.")
        super().__post_init__()

    @property
    def modulation(self) -> VelocityModulation:
        """The modulation's constants alone (what :func:`velocity_modulation` takes)."""
        return VelocityModulation(
            window=self.window, slope=self.slope, centre=self.centre, gain=self.gain, lag=self.lag
        )


# --------------------------------------------------------------------------------------------
# Scenarios: the counterfactual paths


SIGNS = ("", "positive", "negative")


@dataclass(frozen=True)
class Scenario:
    """A counterfactual treatment path ``T1`` as a function of the factual ``T0``.

    ``kind`` is ``"scale"`` (``T1 = value · T0``), ``"shift"`` (``T1 = T0 + value``) or
    ``"function"`` (``T1 = func(T0)``, vectorised over any shape; from Python only, as a config
    file cannot hold a function).

    ``expected_sign`` (``"positive"``, ``"negative"`` or ``""``): the sign the user expects of
    the effect; ``kgcm effect`` flags seasons whose mean effect has the other sign (a check to
    show, not a constraint on the model).

    This one type is the ``[scenario]`` table of the demo and fit configs and the scenario of
    the ``arctic`` simulator, the dose-response and ``kgcm effect``.
    """

    kind: str = "scale"
    value: float = 1.5
    expected_sign: str = ""
    func: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("scale", "shift", "function"):
            raise ConfigError(
                f"scenario.kind must be 'scale' or 'shift' ('function' from Python, with "
                f"func=callable(T0) -> T1); got {self.kind!r}."
                f"{did_you_mean(str(self.kind), ('scale', 'shift'))}"
            )
        if self.kind == "function" and not callable(self.func):
            raise ConfigError(
                f"scenario kind 'function' needs func=callable(T0) -> T1; got {self.func!r}."
            )
        if self.kind != "function" and self.func is not None:
            raise ConfigError(
                f"scenario kind {self.kind!r} takes no func (that is kind 'function'); got "
                f"func={self.func!r}."
            )
        if self.expected_sign not in SIGNS:
            raise ConfigError(
                f"scenario.expected_sign must be 'positive', 'negative' or '' (no expectation); "
                f"got {self.expected_sign!r}."
            )

    def apply(self, t0: np.ndarray) -> np.ndarray:
        """``T1`` for the factual path ``t0`` (any shape; the result has the same shape)."""
        if self.kind == "scale":
            return self.value * t0
        if self.kind == "shift":
            return t0 + self.value
        assert self.func is not None
        t1 = np.asarray(self.func(t0), dtype=np.float64)
        if t1.shape != np.shape(t0):
            raise InputError(
                f"scenario function returned shape {t1.shape}; expected the shape of T0 "
                f"{np.shape(t0)}."
            )
        return t1

    def apply_from(self, t0: np.ndarray, start: int) -> np.ndarray:
        """``T1`` of paths ``t0`` (n, steps): the factual path before step ``start``, the
        scenario from it on (a plan after a history, or a window's factual burn-in)."""
        t1 = np.array(t0, dtype=np.float64, copy=True)
        t1[:, start:] = self.apply(t1[:, start:])
        return t1

    def describe(self, units: str = "") -> str:
        """``"T1 = 1.5 x T0"``, ``"T1 = T0 + 0.1 m/s"`` (with ``units``) or ``"T1 = f(T0)"``."""
        if self.kind == "scale":
            return f"T1 = {self.value:g} x T0"
        if self.kind == "shift":
            return f"T1 = T0 + {self.value:g}" + (f" {units}" if units else "")
        return f"T1 = {getattr(self.func, '__name__', 'f')}(T0)"

    def at(self, strength: float) -> Scenario:
        """The scenario at ``strength`` s: ``T1 = s·T0`` (scale) or ``T1 = T0 + s·value``
        (shift), keeping ``expected_sign``."""
        if self.kind == "function":
            raise ConfigError("a 'function' scenario has no strength; give a scale or a shift.")
        value = float(strength) if self.kind == "scale" else float(strength) * self.value
        return replace(self, value=value)


@dataclass(frozen=True)
class OceanForcing:
    """The prescribed ocean, daily, in the ``seaice`` model's layout (day, x, y), interior cells.

    Attributes
    ----------
    ssh : ndarray (days, nx, ny), m, cell centres
    u : ndarray (days, nx, ny), m/s, west faces (eastward)
    v : ndarray (days, nx, ny), m/s, south faces (northward)
    """

    ssh: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def centre_speed(self) -> np.ndarray:
        """Speed at cell centres (faces averaged), (days, nx, ny)."""
        uc = 0.5 * (self.u + np.roll(self.u, -1, axis=1))
        vc = 0.5 * (self.v + np.roll(self.v, -1, axis=2))
        return speed(uc, vc)


class OceanGeometry(Protocol):
    """What an :class:`OceanScenario` needs of its world (``kgcm.synthetic.seaice``'s)."""

    ssh_mean: np.ndarray  # (nx, ny)

    def dist2_from_centre_km2(self) -> np.ndarray: ...

    def geostrophic(self, ssh: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class OceanScenario:
    """A counterfactual ocean: how the forcing changes (from a window's first day on).

    Where the treatment is computed from the ocean through physics (the ``seaice`` world), the
    scenario is stated on the ocean and the treatment path follows; :class:`Scenario` states it
    on the treatment directly.

    ``kind``:

    - ``"scale_currents"``: currents × ``value``, SSH unchanged. **Breaks geostrophic
      balance**: the tilt term still sees the factual SSH while the drag sees scaled currents.
    - ``"shift_ssh"``: SSH + ``value`` m × a Gaussian dome of radius ``radius_km`` in the
      middle of the domain, currents unchanged. **Breaks geostrophic balance** (only the tilt
      term sees the dome). A uniform shift (``radius_km = 0``) changes no gradient and so
      nothing in the physics.
    - ``"balanced"``: the dynamic SSH (all but its mean over the run) × ``value`` and the
      currents recomputed geostrophically from it, i.e. currents × ``value`` too: balance kept.
    - ``"function"``: ``func(forcing) -> forcing`` (an :class:`OceanForcing` of the same
      shapes); the user owns its balance.

    ``value = 1`` (scale/balanced) or ``0`` (shift) is the identity.
    """

    kind: Literal["scale_currents", "shift_ssh", "balanced", "function"] = "scale_currents"
    value: float = 1.5
    radius_km: float = 150.0
    func: Callable[[OceanForcing], OceanForcing] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        kinds = ("scale_currents", "shift_ssh", "balanced", "function")
        if self.kind not in kinds:
            raise ConfigError(
                f"ocean scenario kind must be one of {kinds}; got {self.kind!r}."
                f"{did_you_mean(str(self.kind), kinds)}"
            )
        if self.kind == "function" and self.func is None:
            raise ConfigError("ocean scenario kind 'function' needs func=callable(forcing).")
        if self.kind == "function" and not self.name:
            raise ConfigError(
                "ocean scenario kind 'function' needs a name= (it keys the cached result)."
            )

    @property
    def key(self) -> str:
        if self.kind == "function":
            return f"function-{self.name}"
        if self.kind == "shift_ssh":
            return f"shift_ssh-{self.value:g}-{self.radius_km:g}"
        return f"{self.kind}-{self.value:g}"

    def apply(self, forcing: OceanForcing, world: OceanGeometry) -> OceanForcing:
        """The scenario's forcing (same shapes)."""
        if self.kind == "scale_currents":
            return replace(forcing, u=self.value * forcing.u, v=self.value * forcing.v)
        if self.kind == "shift_ssh":
            if self.radius_km <= 0:
                bump = np.ones(forcing.ssh.shape[1:])
            else:
                r2 = world.dist2_from_centre_km2()
                bump = np.exp(-0.5 * r2 / self.radius_km**2)
            return replace(forcing, ssh=forcing.ssh + self.value * bump[None])
        if self.kind == "balanced":
            # written as a change of the factual SSH so that value = 1 is bitwise the identity
            ssh = forcing.ssh + (self.value - 1.0) * (forcing.ssh - world.ssh_mean[None])
            u, v = world.geostrophic(ssh)
            return OceanForcing(ssh=ssh, u=u, v=v)
        assert self.func is not None
        out = self.func(forcing)
        for name in ("ssh", "u", "v"):
            got = np.shape(getattr(out, name, None))
            if got != forcing.ssh.shape:
                raise InputError(
                    f"scenario function {self.name!r} returned {name} of shape {got}; expected "
                    f"{forcing.ssh.shape} (days, nx, ny)."
                )
        return out


# --------------------------------------------------------------------------------------------
# The notebooks' recipes (paper.md), reproduced exactly.


@dataclass(frozen=True)
class PaperRecipe:
    r"""One of the paper notebooks' treatment recipes.

    Control treatment ``T0_t = MA_w(zos)_t + hidden_gain·s_t + speed_gain·MA_w(speed)_t + ε``,
    ``ε ~ N(0, noise²)``, ``s_t`` a hidden sinusoid of period ``hidden_period`` days.
    Forcing scenario ``T1_t = (scenario_base + scenario_gain·g_t)·T0_t`` with the gate
    ``g_t = σ(gate_slope·(speed_t − mean speed))``.
    Semi-synthetic outcome ``y1 = y0 − effect_scale·|s_t|·tanh(effect_slope·(T1 − T0))``,
    ``y0`` the observed SIT plus ``N(0, outcome_noise²)``.
    """

    name: str
    window: int
    hidden_gain: float
    hidden_period: float
    speed_gain: float
    noise: float
    gate_slope: float
    scenario_base: float
    scenario_gain: float
    effect_scale: float
    effect_slope: float
    outcome_noise: float


#: v2 notebooks: T0 = MA_5(zos) + 2 s + ε; T1 = (1 + 1.5 σ(−5 (speed − mean)))·T0;
#: y1 = y0 − 6 |s| tanh(2 (T1 − T0)).
#: v1 notebooks: T0 also adds 6·MA_5(speed); T1 = (1.5 + 0.5·gate)·T0; "slope 5 and noise
#: 0.2 on y0", read as y1 = y0 − 6 |s| tanh(5 (T1 − T0)) with y0 = SIT + N(0, 0.2²). The v1
#: gate is not given separately; we use the v2 gate σ(−5 (speed − mean)) for both.
RECIPES: dict[str, PaperRecipe] = {
    "v2": PaperRecipe(
        name="v2", window=5, hidden_gain=2.0, hidden_period=108.0, speed_gain=0.0,
        noise=0.1, gate_slope=-5.0, scenario_base=1.0, scenario_gain=1.5,
        effect_scale=6.0, effect_slope=2.0, outcome_noise=0.0,
    ),
    "v1": PaperRecipe(
        name="v1", window=5, hidden_gain=2.0, hidden_period=108.0, speed_gain=6.0,
        noise=0.1, gate_slope=-5.0, scenario_base=1.5, scenario_gain=0.5,
        effect_scale=6.0, effect_slope=5.0, outcome_noise=0.2,
    ),
}  # fmt: skip


def get_recipe(recipe: str | PaperRecipe) -> PaperRecipe:
    """Look a recipe up by name (``"v1"`` or ``"v2"``)."""
    if isinstance(recipe, PaperRecipe):
        return recipe
    if recipe not in RECIPES:
        raise ConfigError(
            f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}."
            f"{did_you_mean(str(recipe), RECIPES)}"
        )
    return RECIPES[recipe]


def hidden_signal(n_steps: int, period: float) -> np.ndarray:
    """The notebooks' hidden sinusoid ``s_t = sin(2π t / period)``, shape (n_steps,)."""
    return np.sin(2.0 * np.pi * np.arange(n_steps) / period)


def control_treatment(
    zos: np.ndarray,
    total_vel: np.ndarray,
    recipe: str | PaperRecipe = "v2",
    *,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Control treatment ``T0`` of a recipe on a daily series.

    Parameters
    ----------
    zos, total_vel : arrays (n_steps,)
        SSH (m) and speed (m/s).
    rng : numpy Generator
        Source of the noise ``ε``; pass ``np.random.default_rng(seed)``.

    Returns
    -------
    (T0, s) : arrays (n_steps,): the treatment and the hidden sinusoid.
    """
    r = get_recipe(recipe)
    zos = np.asarray(zos, dtype=np.float64)
    total_vel = np.asarray(total_vel, dtype=np.float64)
    if zos.shape != total_vel.shape or zos.ndim != 1:
        raise InputError(
            f"zos and total_vel must be 1-D series of equal length; got {zos.shape} and "
            f"{total_vel.shape}."
        )
    s = hidden_signal(zos.shape[0], r.hidden_period)
    t0 = moving_average(zos, r.window) + r.hidden_gain * s
    if r.speed_gain:
        t0 = t0 + r.speed_gain * moving_average(total_vel, r.window)
    t0 = t0 + rng.normal(0.0, r.noise, size=zos.shape[0])
    return t0, s


def forcing_scenario(
    t0: np.ndarray, total_vel: np.ndarray, recipe: str | PaperRecipe = "v2"
) -> np.ndarray:
    """Counterfactual forcing scenario ``T1 = (base + gain·σ(slope·(speed − mean)))·T0``."""
    r = get_recipe(recipe)
    total_vel = np.asarray(total_vel, dtype=np.float64)
    gate = sigmoid(r.gate_slope * (total_vel - np.nanmean(total_vel)))
    return (r.scenario_base + r.scenario_gain * gate) * np.asarray(t0, dtype=np.float64)
