r"""``kgcm fetch``: Copernicus Marine subset requests for the Arctic fields a run needs.

A request is a :class:`FetchRequest`, a frozen record whose :meth:`FetchRequest.to_kwargs` are
the keyword arguments of ``copernicusmarine.subset`` (toolbox 2.x): ``dataset_id``,
``variables``, ``minimum_longitude``, ``maximum_longitude``, ``minimum_latitude``,
``maximum_latitude``, ``start_datetime``, ``end_datetime``, ``minimum_depth``, ``maximum_depth``
(only when a variable has depth levels), ``output_directory`` and ``output_filename``.
:func:`build_requests` makes them from a product name, variables and dates; :func:`download`
runs them, which needs the optional ``copernicusmarine`` package (``pip install 'kgcm[fetch]'``)
and a free Copernicus Marine account (``copernicusmarine login`` once, or the environment
variables ``COPERNICUSMARINE_SERVICE_USERNAME`` / ``COPERNICUSMARINE_SERVICE_PASSWORD``).

Nothing here touches the network until :func:`download` is called.

Sizes, for planning: GLORYS12 daily north of 60°N is about 6 MB a day per variable, about 2 GB
per variable-year; ``split="year"`` writes one file per year so that an interrupted download
restarts at the year it stopped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from kgcm.errors import ConfigError, DataError, did_you_mean

__all__ = [
    "PRODUCTS",
    "CmemsProduct",
    "FetchRequest",
    "build_requests",
    "download",
    "get_product",
    "import_copernicusmarine",
]

Split = Literal["none", "year", "month"]

INSTALL_HINT = "pip install 'kgcm[fetch]'"
CREDENTIALS_HINT = (
    "Downloading needs a free Copernicus Marine account (https://data.marine.copernicus.eu). "
    "Run `copernicusmarine login` once (it stores the credentials in ~/.copernicusmarine), or "
    "set COPERNICUSMARINE_SERVICE_USERNAME and COPERNICUSMARINE_SERVICE_PASSWORD."
)


@dataclass(frozen=True)
class CmemsProduct:
    """One Copernicus Marine dataset kgcm knows how to request and read.

    Attributes
    ----------
    name : kgcm product name (also the reader name where kgcm has a reader).
    product_id : the Copernicus Marine product.
    dataset_id : the daily dataset requested by default.
    dataset_ids : every dataset id that may be chosen instead (``dataset_id`` first).
    variables : the product's variable names kgcm uses, with a one-line meaning.
    aliases : canonical name -> the product's name, where they differ.
    depth_variables : variables with depth levels; a request for any of them selects the
        surface with ``surface_depth``.
    surface_depth : ``(minimum_depth, maximum_depth)`` in m that holds the top model level.
    first_date : the first day of the dataset.
    pairs : vector components that are only useful together.
    note : one line shown with every request.
    """

    name: str
    product_id: str
    dataset_id: str
    dataset_ids: tuple[str, ...]
    variables: Mapping[str, str]
    aliases: Mapping[str, str] = field(default_factory=dict)
    depth_variables: frozenset[str] = frozenset()
    surface_depth: tuple[float, float] = (0.0, 1.0)
    first_date: str = "1993-01-01"
    pairs: tuple[tuple[str, str], ...] = ()
    note: str = ""


PRODUCTS: dict[str, CmemsProduct] = {
    "cmems-glorys12": CmemsProduct(
        name="cmems-glorys12",
        product_id="GLOBAL_MULTIYEAR_PHY_001_030",
        dataset_id="cmems_mod_glo_phy_my_0.083deg_P1D-m",
        dataset_ids=(
            "cmems_mod_glo_phy_my_0.083deg_P1D-m",
            "cmems_mod_glo_phy_myint_0.083deg_P1D-m",
        ),
        variables={
            "sithick": "sea-ice thickness (m)",
            "siconc": "sea-ice concentration (1)",
            "zos": "sea-surface height (m)",
            "uo": "eastward ocean velocity (m/s), depth levels",
            "vo": "northward ocean velocity (m/s), depth levels",
            "usi": "eastward sea-ice velocity (m/s)",
            "vsi": "northward sea-ice velocity (m/s)",
        },
        depth_variables=frozenset({"uo", "vo"}),
        surface_depth=(0.0, 1.0),
        first_date="1993-01-01",
        pairs=(("uo", "vo"), ("usi", "vsi")),
        note=(
            "The multiyear dataset ends a few years before the present; later days are in the "
            "interim dataset cmems_mod_glo_phy_myint_0.083deg_P1D-m (--dataset-id). Check the "
            "current ranges with `copernicusmarine describe --dataset-id <id>`."
        ),
    ),
    "cmems-topaz": CmemsProduct(
        name="cmems-topaz",
        product_id="ARCTIC_MULTIYEAR_PHY_002_003",
        dataset_id="cmems_mod_arc_phy_my_topaz4_P1D-m",
        dataset_ids=("cmems_mod_arc_phy_my_topaz4_P1D-m",),
        variables={
            "sithick": "sea-ice thickness (m)",
            "siconc": "sea-ice concentration (1)",
            "zos": "sea-surface height (m)",
            "vxo": "ocean velocity along grid x (m/s), depth levels",
            "vyo": "ocean velocity along grid y (m/s), depth levels",
            "vxsi": "sea-ice velocity along grid x (m/s)",
            "vysi": "sea-ice velocity along grid y (m/s)",
        },
        aliases={"uo": "vxo", "vo": "vyo", "usi": "vxsi", "vsi": "vysi"},
        depth_variables=frozenset({"vxo", "vyo"}),
        surface_depth=(0.0, 1.0),
        first_date="1991-01-01",
        pairs=(("vxo", "vyo"), ("vxsi", "vysi")),
        note=(
            "TOPAZ velocities are along the model grid x/y, not east/north; kgcm's reader "
            "rotates them. Check the dataset's ranges with "
            "`copernicusmarine describe --dataset-id cmems_mod_arc_phy_my_topaz4_P1D-m`."
        ),
    ),
}


@dataclass(frozen=True)
class FetchRequest:
    """One ``copernicusmarine.subset`` call. Field names are the toolbox's keyword names,
    except ``product`` (kgcm's name, not sent).

    Latitudes in [-90, 90], longitudes in [-180, 360], depths in m (positive down), datetimes
    as ``YYYY-MM-DDTHH:MM:SS`` (``start_datetime`` at 00:00:00 of the first day,
    ``end_datetime`` at 23:59:59 of the last, so that every daily mean of those days is in).
    """

    product: str
    dataset_id: str
    variables: tuple[str, ...]
    start_datetime: str
    end_datetime: str
    output_directory: str
    output_filename: str
    minimum_latitude: float = 60.0
    maximum_latitude: float = 90.0
    minimum_longitude: float = -180.0
    maximum_longitude: float = 180.0
    minimum_depth: float | None = None
    maximum_depth: float | None = None
    skip_existing: bool = False

    def __post_init__(self) -> None:
        if not self.variables:
            raise ConfigError("a fetch request needs at least one variable.")
        if not -90 <= self.minimum_latitude < self.maximum_latitude <= 90:
            raise ConfigError(
                f"latitudes must satisfy -90 <= minimum < maximum <= 90; got "
                f"{self.minimum_latitude}, {self.maximum_latitude}."
            )
        if not -180 <= self.minimum_longitude < self.maximum_longitude <= 360:
            raise ConfigError(
                f"longitudes must satisfy -180 <= minimum < maximum <= 360; got "
                f"{self.minimum_longitude}, {self.maximum_longitude}."
            )
        if (self.minimum_depth is None) != (self.maximum_depth is None):
            raise ConfigError("give both minimum_depth and maximum_depth, or neither.")
        if self.minimum_depth is not None and not 0 <= self.minimum_depth <= self.maximum_depth:
            raise ConfigError(
                f"depths must satisfy 0 <= minimum <= maximum (m, positive down); got "
                f"{self.minimum_depth}, {self.maximum_depth}."
            )
        if pd.Timestamp(self.start_datetime) > pd.Timestamp(self.end_datetime):
            raise ConfigError(
                f"start {self.start_datetime} is after end {self.end_datetime}; swap them."
            )

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``copernicusmarine.subset(**kwargs)`` (toolbox 2.x).

        The depth keywords are left out when the request has no variable with depth levels, and
        ``skip_existing`` when False (the toolbox default).
        """
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del kwargs["product"]
        kwargs["variables"] = list(self.variables)
        if self.minimum_depth is None:
            del kwargs["minimum_depth"], kwargs["maximum_depth"]
        if not self.skip_existing:
            del kwargs["skip_existing"]
        return kwargs

    @property
    def path(self) -> Path:
        """Where the toolbox writes the file."""
        return Path(self.output_directory) / self.output_filename


def get_product(name: str) -> CmemsProduct:
    """The product called ``name`` (:data:`PRODUCTS`); ConfigError with a did-you-mean."""
    if name not in PRODUCTS:
        raise ConfigError(
            f"unknown product {name!r} for kgcm fetch; known: {sorted(PRODUCTS)}."
            f"{did_you_mean(name, PRODUCTS)}"
        )
    return PRODUCTS[name]


def _resolve_variables(product: CmemsProduct, variables: Sequence[str]) -> tuple[str, ...]:
    """The product's names for ``variables`` (canonical aliases mapped), in order, once each."""
    if isinstance(variables, str):
        variables = variables.split(",")
    names = [v.strip() for v in variables if v.strip()]
    if not names:
        raise ConfigError(
            f"no variables given; {product.name} has {list(product.variables)}"
            + (f" (or canonical {list(product.aliases)})" if product.aliases else "")
            + "."
        )
    resolved = []
    for name in names:
        if name in product.variables:
            resolved.append(name)
        elif name in product.aliases:
            resolved.append(product.aliases[name])
        else:
            choices = [*product.variables, *product.aliases]
            raise ConfigError(
                f"{product.name} has no variable {name!r}; it has {list(product.variables)}"
                + (
                    f" (canonical names {list(product.aliases)} are mapped to its own)"
                    if product.aliases
                    else ""
                )
                + f".{did_you_mean(name, choices)}"
            )
    resolved = list(dict.fromkeys(resolved))
    for a, b in product.pairs:
        if (a in resolved) != (b in resolved):
            have, lack = (a, b) if a in resolved else (b, a)
            raise ConfigError(
                f"{product.name}: {have!r} without {lack!r}; velocity components are used as a "
                f"pair (rotation, speed), so request both."
            )
    return tuple(resolved)


def _periods(
    start: pd.Timestamp, end: pd.Timestamp, split: Split
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``(first day, last day)`` of each file: calendar years or months cut at start/end."""
    if split == "none":
        return [(start, end)]
    freq = {"year": "YS", "month": "MS"}[split]
    edges = [start, *pd.date_range(start, end, freq=freq).drop(start, errors="ignore")]
    return [
        (a, (edges[i + 1] - pd.Timedelta(days=1)) if i + 1 < len(edges) else end)
        for i, a in enumerate(edges)
    ]


def build_requests(
    product: str,
    variables: Sequence[str] | str,
    start: str,
    end: str,
    *,
    out: str | os.PathLike[str] = "data",
    bbox: tuple[float, float, float, float] = (60.0, 90.0, -180.0, 180.0),
    depth: tuple[float, float] | None = None,
    split: Split = "none",
    dataset_id: str | None = None,
    skip_existing: bool = False,
) -> list[FetchRequest]:
    """The subset requests that fetch ``variables`` of ``product`` from ``start`` to ``end``.

    Parameters
    ----------
    product : a key of :data:`PRODUCTS` (``"cmems-glorys12"``, ``"cmems-topaz"``).
    variables : the product's names, or canonical ones (``uo``/``vo`` are mapped to TOPAZ's
        ``vxo``/``vyo``); a list or a comma-separated string.
    start, end : first and last day, inclusive (``YYYY-MM-DD``).
    out : output directory.
    bbox : ``(lat_min, lat_max, lon_min, lon_max)`` in degrees, the same order as kgcm's
        ``region``; default everything north of 60°N.
    depth : ``(minimum, maximum)`` depth in m for variables with depth levels; default the
        product's surface range (0-1 m: the top level, 0.49 m in GLORYS12).
    split : ``"none"`` (one file), ``"year"`` or ``"month"`` (one file per period).
    dataset_id : one of the product's ``dataset_ids`` instead of the default (e.g. GLORYS12's
        interim dataset for recent days).
    skip_existing : let the toolbox skip files already downloaded (resuming a split download);
        by default it writes a new numbered file next to an existing one.

    Returns
    -------
    list of :class:`FetchRequest`, one per period, with output files named
    ``<product>_<variables>_<YYYYMMDD>-<YYYYMMDD>.nc``.
    """
    spec = get_product(product)
    names = _resolve_variables(spec, variables)
    if dataset_id is None:
        dataset_id = spec.dataset_id
    elif dataset_id not in spec.dataset_ids:
        raise ConfigError(
            f"{spec.name} has no dataset {dataset_id!r}; choose one of {list(spec.dataset_ids)}."
            f"{did_you_mean(dataset_id, spec.dataset_ids)}"
        )
    if split not in ("none", "year", "month"):
        raise ConfigError(f"split must be 'none', 'year' or 'month'; got {split!r}.")
    t0, t1 = _parse_day(start, "start"), _parse_day(end, "end")
    if t0 > t1:
        raise ConfigError(f"start {t0.date()} is after end {t1.date()}; swap them.")
    first = pd.Timestamp(spec.first_date)
    if t0 < first:
        raise ConfigError(
            f"{spec.name} starts on {first.date()}; start {t0.date()} is earlier. Use a start on "
            f"or after {first.date()}."
        )
    if len(bbox) != 4:
        raise ConfigError(
            f"bbox must be (lat_min, lat_max, lon_min, lon_max); got {tuple(bbox)!r}."
        )
    lat_min, lat_max, lon_min, lon_max = (float(v) for v in bbox)
    needs_depth = any(v in spec.depth_variables for v in names)
    if depth is not None and len(depth) != 2:
        raise ConfigError(f"depth must be (minimum, maximum) in m; got {tuple(depth)!r}.")
    depth_range: tuple[float | None, float | None] = (None, None)
    if needs_depth:
        depth_range = (float(depth[0]), float(depth[1])) if depth else spec.surface_depth
    label = "-".join(names)
    requests = []
    for a, b in _periods(t0, t1, split):
        requests.append(
            FetchRequest(
                product=spec.name,
                dataset_id=dataset_id,
                variables=names,
                start_datetime=f"{a:%Y-%m-%d}T00:00:00",
                # the whole last day: daily means are stamped at 00:00 or 12:00 by product
                end_datetime=f"{b:%Y-%m-%d}T23:59:59",
                output_directory=os.fspath(out),
                output_filename=f"{spec.name}_{label}_{a:%Y%m%d}-{b:%Y%m%d}.nc",
                minimum_latitude=lat_min,
                maximum_latitude=lat_max,
                minimum_longitude=lon_min,
                maximum_longitude=lon_max,
                minimum_depth=depth_range[0],
                maximum_depth=depth_range[1],
                skip_existing=skip_existing,
            )
        )
    return requests


def _parse_day(text: str, what: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(str(text))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {text!r} is not a date; write YYYY-MM-DD.") from exc
    if day != day.normalize():
        raise ConfigError(f"{what} {text!r} has a time of day; daily data need YYYY-MM-DD.")
    return day


def import_copernicusmarine() -> Any:
    """The ``copernicusmarine`` module, or a ConfigError naming the install command."""
    try:
        import copernicusmarine
    except ImportError as exc:
        raise ConfigError(
            f"downloading needs the copernicusmarine package (Copernicus Marine Toolbox 2.x), "
            f"which is not installed. Install it with: {INSTALL_HINT}. To see the requests "
            f"without downloading, use --dry-run."
        ) from exc
    return copernicusmarine


def download(
    requests: Sequence[FetchRequest], *, log: Callable[[str], None] | None = None
) -> list[Path]:
    """Run each request with ``copernicusmarine.subset``; return the files written.

    Raises
    ------
    ConfigError
        when copernicusmarine is not installed (names ``pip install 'kgcm[fetch]'``).
    DataError
        when a download fails, with the toolbox's message and how to log in.
    """
    cm = import_copernicusmarine()
    written = []
    for i, request in enumerate(requests, 1):
        if log is not None:
            log(f"[{i}/{len(requests)}] {request.dataset_id} -> {request.path}")
        Path(request.output_directory).mkdir(parents=True, exist_ok=True)
        try:
            cm.subset(**request.to_kwargs())
        except Exception as exc:
            raise DataError(
                f"Copernicus Marine download of {request.dataset_id} "
                f"({request.start_datetime[:10]} to {request.end_datetime[:10]}) failed: "
                f"{exc.__class__.__name__}: {exc}. {CREDENTIALS_HINT}"
            ) from exc
        written.append(request.path)
    return written
