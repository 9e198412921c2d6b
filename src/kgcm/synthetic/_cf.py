"""CF coordinates shared by the gridded simulators (``arctic``, ``seaice``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["grid_coords"]


def grid_coords(
    time: Any, y_km: np.ndarray, x_km: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> dict[str, tuple]:
    """CF coordinates of a (time, y, x) world: projection y/x in metres, 2-D lat/lon."""
    return {
        "time": ("time", time, {"standard_name": "time", "axis": "T"}),
        "y": ("y", y_km * 1e3, _axis("projection_y_coordinate", "Y")),
        "x": ("x", x_km * 1e3, _axis("projection_x_coordinate", "X")),
        "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }


def _axis(standard_name: str, axis: str) -> dict[str, str]:
    return {"standard_name": standard_name, "units": "m", "axis": axis}
