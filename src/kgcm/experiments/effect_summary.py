"""What a daily effect series says, in numbers a reader can check: seasonal means with their
intervals, the effect's day-to-day noise beside its seasonal signal, and whether each season's
sign agrees with the sign the user expects.

Pure functions on an effect series ``(time,)`` (a grid is reduced to its area mean first by the
caller). Seasons are the meteorological ones: DJF, MAM, JJA, SON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SEASONS", "noise_and_signal", "season_of", "seasonal_means", "sign_flags"]

SEASONS = ("DJF", "MAM", "JJA", "SON")
_MONTH_SEASON = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])  # Jan..Dec -> DJF..SON


def season_of(time: np.ndarray) -> np.ndarray:
    """Season index 0-3 (DJF, MAM, JJA, SON) of each time stamp."""
    months = pd.DatetimeIndex(time).month.to_numpy()
    return _MONTH_SEASON[months - 1]


def seasonal_means(
    time: np.ndarray,
    effect: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """Mean effect per season over every finite day, with the mean of the daily interval ends.

    The mean of daily interval ends bounds the seasonal mean only if the daily errors move
    together (they largely do: one model, one scenario); it is reported as such, not as a
    calibrated interval of the mean.
    """
    season = season_of(time)
    out: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(SEASONS):
        days = (season == k) & np.isfinite(effect)
        entry: dict[str, float | int | None] = {
            "n_days": int(days.sum()),
            "mean_effect": float(effect[days].mean()) if days.any() else None,
        }
        if lower is not None and upper is not None:
            entry["mean_lower"] = float(lower[days].mean()) if days.any() else None
            entry["mean_upper"] = float(upper[days].mean()) if days.any() else None
        out[name] = entry
    return out


def noise_and_signal(time: np.ndarray, effect: np.ndarray, *, smooth_days: int = 31) -> dict:
    """The effect's day-to-day noise beside its seasonal signal.

    - ``day_to_day_sd``: sd of the day-to-day change divided by √2 (the sd of independent
      daily noise; a smooth series has a value near 0);
    - ``seasonal_signal_sd``: sd over the year of the effect's day-of-year mean, smoothed over
      ``smooth_days``;
    - ``noise_to_signal``: their ratio.
    """
    series = pd.Series(effect, index=pd.DatetimeIndex(time)).dropna()
    if len(series) < 3:
        return {"day_to_day_sd": None, "seasonal_signal_sd": None, "noise_to_signal": None}
    consecutive = series.index.to_series().diff().dt.days.to_numpy()[1:] == 1
    diffs = np.diff(series.to_numpy())[consecutive]
    noise = float(np.std(diffs) / np.sqrt(2.0)) if diffs.size else None
    by_doy = series.groupby(series.index.day_of_year).mean().reindex(range(1, 367))
    half = smooth_days // 2
    wrapped = pd.concat([by_doy.iloc[-half:], by_doy, by_doy.iloc[:half]])
    cycle = wrapped.rolling(smooth_days, center=True, min_periods=1).mean().iloc[half:-half]
    signal = float(np.nanstd(cycle.to_numpy()))
    ratio = noise / signal if noise is not None and signal > 0 else None
    return {"day_to_day_sd": noise, "seasonal_signal_sd": signal, "noise_to_signal": ratio}


def sign_flags(seasons: dict[str, dict[str, Any]], expected_sign: str) -> list[str]:
    """Seasons whose mean effect has the other sign than ``expected_sign`` ("positive" or
    "negative"); empty when none, or when no sign is expected ("")."""
    if not expected_sign:
        return []
    want = 1.0 if expected_sign == "positive" else -1.0
    return [
        name
        for name, entry in seasons.items()
        if entry.get("mean_effect") is not None and np.sign(entry["mean_effect"]) == -want
    ]
