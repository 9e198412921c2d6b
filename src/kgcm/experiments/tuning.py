"""The same tuning budget for every method, chosen on tuning worlds by factual error.

A benchmark config names its tuning worlds (``tuning_seeds``) and, per estimator, a small
search over its main knobs::

    tuning_seeds = [100, 101, 102]

    [[estimators]]
    name = "rmsn"
    search = {hidden = [32, 64], "training.learning_rate" = [1e-3, 3e-3]}

``kgcm tune --config CONFIG`` fits every candidate (the cartesian product of ``search`` over
the estimator's ``params``; dotted keys reach nested tables) on every dataset of the config at
every tuning seed, through the benchmark's own cells, and keeps for each estimator the
candidate with the lowest mean **factual** RMSE on the held-out units, never PEHE or any other
effect metric. Every searched estimator must have the same number of candidates: the budget
is equal by construction, and the report names the estimators that were not searched. It
writes ``tuning.md`` (every candidate's factual RMSE and the choice) and ``tuned.toml``: the
config with the chosen params and no ``search``, which ``kgcm benchmark --config
OUT/tuned.toml`` evaluates on the config's ``seeds``, disjoint from the tuning worlds.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from kgcm._io import atomic_write_text
from kgcm.config import dump_toml
from kgcm.errors import ConfigError
from kgcm.experiments.benchmark import BenchmarkConfig, EstimatorSpec, run_benchmark

__all__ = ["candidates", "run_tuning", "with_setting"]

#: separates an estimator's label from its candidate number in the tuning cells
_MARK = "=candidate-"


def with_setting(params: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``params`` with ``key`` set; a dotted key (``training.learning_rate``) sets a
    nested table, created when absent."""
    out = copy.deepcopy(dict(params))
    node = out
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            raise ConfigError(
                f"search key {key!r}: {part!r} is {child!r} in the estimator's params, not a "
                f"table; search a key that is not set, or set a table there."
            )
        node[part] = child = dict(child)
        node = child
    node[last] = value
    return out


def candidates(spec: EstimatorSpec) -> list[dict[str, Any]]:
    """The params of every candidate of ``spec.search``: its base params with each combination
    of the searched values (in the order given: the first candidate takes the first values)."""
    keys = list(spec.search)
    for key in keys:
        values = spec.search[key]
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(
                f"estimators.{spec.key}.search.{key} must be a non-empty list of values to "
                f"try; got {values!r}."
            )
    out = []
    for combo in itertools.product(*(spec.search[k] for k in keys)):
        params = dict(spec.params)
        for key, value in zip(keys, combo, strict=True):
            params = with_setting(params, key, value)
        out.append(params)
    return out


def run_tuning(
    config: BenchmarkConfig,
    *,
    out: str | Path | None = None,
    base_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Search every estimator with a ``search`` on the tuning worlds; write ``tuning.md``,
    ``tuning.json`` and ``tuned.toml`` to ``out`` (default: the config's ``out`` plus
    ``-tuning``). Returns, per estimator label, the chosen params."""
    if not config.tuning_seeds:
        raise ConfigError(
            "kgcm tune needs tuning worlds: set tuning_seeds = [...] in the config (disjoint "
            "from seeds, which stay for the evaluation)."
        )
    searched = [e for e in config.estimators if e.search]
    if not searched:
        raise ConfigError(
            "no estimator of the config has a search: add search = {knob = [values, ...]} to "
            "the [[estimators]] to tune (the same number of candidates for each)."
        )
    grids = {e.key: candidates(e) for e in searched}
    sizes = {key: len(grid) for key, grid in grids.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(
            f"every searched estimator gets the same budget, but the candidates per estimator "
            f"are {sizes}; give each search the same number of combinations."
        )
    specs = tuple(
        replace(e, label=f"{e.key}{_MARK}{i}", params=p, search={})
        for e in searched
        for i, p in enumerate(grids[e.key])
    )
    folder = Path(out) if out is not None else Path(config.out + "-tuning")
    grid = replace(
        config,
        name=f"{config.name} (tuning)",
        estimators=specs,
        seeds=config.tuning_seeds,
        tuning_seeds=(),
        reference=specs[0].key,
        out=str(folder / "cells"),
    )
    budget = next(iter(sizes.values()))
    log(
        f"tuning {len(searched)} estimators, {budget} candidates each, on "
        f"{len(config.datasets)} datasets x tuning seeds {list(config.tuning_seeds)}"
    )
    results = run_benchmark(grid, base_dir=base_dir, log=log, progress=progress)
    chosen, rows = _choose(results, searched, grids)
    tuned = replace(
        config,
        estimators=tuple(
            replace(e, params=chosen[e.key]["params"], search={}) if e.search else e
            for e in config.estimators
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    untuned = [e.key for e in config.estimators if not e.search]
    atomic_write_text(folder / "tuned.toml", _tuned_header(config, folder) + dump_toml(tuned))
    atomic_write_text(folder / "tuning.json", json.dumps(chosen, indent=2, default=str) + "\n")
    atomic_write_text(folder / "tuning.md", _table(config, rows, budget, untuned))
    log(f"wrote {folder / 'tuning.md'} and {folder / 'tuned.toml'}")
    return chosen


def _choose(
    results: pd.DataFrame, searched: list[EstimatorSpec], grids: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per estimator, the candidate with the lowest mean factual RMSE over its finished cells
    (first candidate on a tie); and one row per candidate for the report."""
    ok = results[results["status"] == "ok"]
    chosen: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for e in searched:
        settings = _settings(e)
        scores = []
        for i in range(len(grids[e.key])):
            cells = ok[ok["estimator"] == f"{e.key}{_MARK}{i}"]
            total = int((results["estimator"] == f"{e.key}{_MARK}{i}").sum())
            rmse = float(cells["factual_rmse"].mean()) if len(cells) == total else float("nan")
            scores.append(rmse)
            rows.append({"estimator": e.key, "candidate": i, "settings": settings[i],
                         "factual_rmse": rmse, "cells": f"{len(cells)}/{total}"})  # fmt: skip
        finite = [s for s in scores if s == s]
        if not finite:
            raise ConfigError(
                f"no candidate of {e.key!r} finished on every tuning cell; see the statuses in "
                f"the tuning folder's cells/results.csv."
            )
        best = scores.index(min(finite))
        chosen[e.key] = {
            "candidate": best,
            "params": grids[e.key][best],
            "factual_rmse": min(finite),
        }
        for row in rows:
            if row["estimator"] == e.key:
                row["chosen"] = row["candidate"] == best
    return chosen, rows


def _settings(e: EstimatorSpec) -> list[str]:
    """Each candidate's searched values as text, in the order of :func:`candidates`."""
    return [
        ", ".join(f"{k} = {v!r}" for k, v in zip(e.search, combo, strict=True))
        for combo in itertools.product(*e.search.values())
    ]


def _tuned_header(config: BenchmarkConfig, folder: Path) -> str:
    return (
        f"# written by kgcm tune: the config {config.name!r} with each searched estimator's\n"
        f"# params chosen on tuning seeds {list(config.tuning_seeds)} by mean held-out factual\n"
        f"# RMSE ({folder / 'tuning.md'}).\n"
        f"# Evaluate: kgcm benchmark --config {folder / 'tuned.toml'}\n"
    )


def _table(
    config: BenchmarkConfig, rows: list[dict[str, Any]], budget: int, untuned: list[str]
) -> str:
    lines = [
        f"# Tuning: {config.name}",
        "",
        f"Tuning seeds {list(config.tuning_seeds)} (evaluation seeds {list(config.seeds)} never "
        f"run here); {budget} candidates per searched estimator; chosen by the lowest mean "
        f"held-out factual RMSE over every dataset and tuning seed (no effect metric is read).",
        "",
        "| estimator | candidate | settings | factual RMSE | cells | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['estimator']} | {r['candidate']} | {r['settings']} | "
            f"{r['factual_rmse']:.4f} | {r['cells']} | {'yes' if r.get('chosen') else ''} |"
        )
    if untuned:
        lines += ["", f"Not searched (their params as configured): {', '.join(untuned)}."]
    return "\n".join(lines) + "\n"
