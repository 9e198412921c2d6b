"""``kgcm report RUN``: one self-contained, offline HTML report of a run folder and its Markdown
twin (``report.html``, ``report.md``).

The report gathers what the run folder holds (a ``kgcm fit`` run, with whatever ``kgcm effect``,
``kgcm dose-response`` and ``kgcm refute`` added to it, or a ``kgcm demo`` folder): provenance
of every file (sizes and the SHA-256 the run recorded in ``manifest.json``; the input store and
every product file it was prepared from, with the size and SHA-256 ``kgcm prepare`` recorded in
the store's ``kgcm_inputs.json``), the treatment, the estimand and covariates, the config, the
overlap diagnostic, the metrics beside the references, the effects and their maps, the
dose-response, the refutations and what is known of the intervals' calibration. A part that was
not run is stated with the command that adds it, never left out silently.

The HTML embeds every figure as base64 PNG and its own CSS; it loads nothing (no scripts, fonts
or style sheets from anywhere), so it opens offline and can be mailed as one file. The Markdown
twin links the figures beside it in the run folder.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgcm._io import MARKER, atomic_write_text, read_marker
from kgcm.errors import DataError
from kgcm.provenance import INPUTS, INPUTS_ATTR, read_inputs

__all__ = ["Report", "build_report", "render_html", "render_markdown", "write_report"]

Log = Callable[[str], None]


# --- a small document model: sections of blocks, rendered twice ------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Missing:
    """A part that was not run, with the command that adds it."""

    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


@dataclass(frozen=True)
class Details:
    """A long table folded under a one-line summary (HTML ``<details>``; Markdown shows both)."""

    summary: str
    table: Table


Block = Text | Missing | Code | Table | Details | Image

#: tables longer than this are folded in the HTML report
_FOLD_ROWS = 20


@dataclass
class Report:
    """The report's content: a title, a subtitle and ordered sections of blocks."""

    title: str
    subtitle: str
    sections: list[tuple[str, list[Block]]] = field(default_factory=list)

    def section(self, name: str) -> list[Block]:
        blocks: list[Block] = []
        self.sections.append((name, blocks))
        return blocks

    @property
    def images(self) -> list[Image]:
        return [b for _, blocks in self.sections for b in blocks if isinstance(b, Image)]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path} cannot be read as JSON ({exc}); it is damaged. Rerun the command that "
            f"wrote it."
        ) from exc
    return data if isinstance(data, dict) else None


# --- building the content ---------------------------------------------------------------------


def _kind(run: Path) -> str:
    marker = read_marker(run)
    if marker is not None and marker.get("kind") in ("fit", "demo"):
        return str(marker["kind"])
    if (run / "split.npz").is_file():
        return "fit"
    if (run / "effects.nc").is_file() and (run / "metrics.json").is_file():
        return "demo"
    raise DataError(
        f"{run} is not a kgcm run folder (no {MARKER} of a fit or demo run, no split.npz); point "
        f"kgcm report to a folder written by kgcm fit or kgcm demo."
    )


def _files_table(run: Path, log: Log) -> Table:
    """Every file of the run folder with its size and the SHA-256 the run recorded."""
    from kgcm._io import file_hash

    marker = read_marker(run)
    recorded = (marker or {}).get("files") or {}
    rows = []
    for p in sorted(run.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.name in (MARKER, *_OUTPUTS):
            continue
        entry = recorded.get(p.name)
        size = p.stat().st_size
        if marker is None:
            # a folder being written (kgcm demo's report is part of its own transaction): the
            # manifest written next records these same hashes
            digest = file_hash(p)
        elif entry is None:
            digest = "not recorded (written after the run's manifest)"
        elif entry.get("size") != size:
            digest = f"{entry['sha256']} (recorded; the file's size has changed since)"
        else:
            digest = str(entry["sha256"])
        rows.append((p.name, _size(size), digest))
    log(f"listed {len(rows)} files of {run}")
    return Table(("file", "size", "SHA-256 (as manifest.json records it)"), tuple(rows))


def _store_blocks(data: Path) -> list[Block]:
    """Provenance of a prepared store: path, size, its manifest and its product files."""
    import tomllib

    import xarray as xr

    if not data.exists():
        return [
            Missing(
                f"the input store {data} is not there any more (moved or deleted): its "
                f"provenance cannot be shown."
            )
        ]
    files = [p for p in data.rglob("*") if p.is_file()]
    blocks: list[Block] = []
    marker = read_marker(data)
    recorded = "no manifest (written before kgcm recorded manifests)"
    if marker is not None:
        manifest = data / MARKER
        from kgcm._io import file_hash

        recorded = (
            f"manifest.json of kind {marker.get('kind')!r}, kgcm {marker.get('kgcm_version')}, "
            f"listing {len(marker.get('files') or {})} files with their SHA-256; SHA-256 of that "
            f"manifest {file_hash(manifest)}"
        )
    blocks.append(
        Table(
            ("input", "value"),
            (
                ("prepared store", str(data)),
                (
                    "files, total size",
                    f"{len(files)}, {_size(sum(p.stat().st_size for p in files))}",
                ),
                ("checksums", recorded),
            ),
        )
    )
    try:
        with xr.open_zarr(data, consolidated=None) as ds:
            attrs = dict(ds.attrs)
    except Exception as exc:
        return [*blocks, Missing(f"the store cannot be opened ({exc.__class__.__name__}: {exc}).")]
    if str(attrs.get("source", "")).startswith("kgcm.synthetic"):
        blocks.append(
            Text(
                f"The store was written by the simulator {attrs['source']} "
                f"({attrs.get('title', '')}); it has no product files."
            )
        )
    try:
        prepare = tomllib.loads(str(attrs.get("kgcm_prepare_config", "")))
    except tomllib.TOMLDecodeError:
        prepare = {}
    try:
        record = read_inputs(data, attrs)
    except DataError as exc:
        blocks.append(Missing(f"the store's record of its input files is unusable: {exc}"))
        record = None
    if record is not None:
        blocks.extend(_inputs_blocks(record, str(attrs.get(INPUTS_ATTR, ""))))
    elif prepare.get("sources") and not (data / INPUTS).exists():
        blocks.append(
            Missing(
                f"the store predates kgcm's record of input files (it has no {INPUTS}): the "
                f"size and SHA-256 of each product file it was prepared from were not recorded. "
                f"Run kgcm prepare again to record them; below are the config's paths as found "
                f"now."
            )
        )
    sources = []
    for source in [] if record is not None else prepare.get("sources", []) or []:
        paths = source.get("paths", [])
        for p in [paths] if isinstance(paths, str) else paths:
            found = [Path(m) for m in sorted(glob.glob(p))] if glob.has_magic(p) else [Path(p)]
            found = [f for f in found if f.is_file()]
            where = (
                f"{len(found)} file{'s' if len(found) > 1 else ''}, "
                f"{_size(sum(f.stat().st_size for f in found))}"
                if found
                else "not found from here (the path is relative to the prepare config, or the "
                "file moved)"
            )
            sources.append(
                (str(source.get("name", "")), str(source.get("product") or "auto"), str(p), where)
            )
    if sources:
        blocks.append(Text("Product files as kgcm prepare's config names them (sizes as now):"))
        blocks.append(Table(("source", "product", "path", "size"), tuple(sources)))
    if "sources" in attrs:
        try:
            products = json.loads(attrs["sources"])
        except ValueError:
            products = {}
        rows = tuple(
            (
                n,
                _fmt(v.get("reader")),
                _fmt(v.get("product")),
                _fmt(v.get("time_step")),
                _fmt(v.get("n_source_files")),
            )
            for n, v in products.items()
        )
        if rows:
            blocks.append(Table(("source", "reader", "product", "time step", "files"), rows))
    if "history" in attrs:
        blocks.append(Text(f"Store history: {attrs['history']}."))
    return blocks


def _inputs_blocks(record: dict[str, Any], digest: str) -> list[Block]:
    """Every input file of a prepared store with its size and SHA-256, as recorded."""
    rows = tuple(
        (
            str(f.get("source", "")),
            str(f.get("role", "")),
            str(f.get("path", "")),
            str(f.get("resolved", "")),
            f"{int(f.get('size', 0)):,}",
            str(f.get("sha256", "")),
        )
        for f in record.get("files", [])
    )
    total = sum(int(f.get("size", 0)) for f in record.get("files", []))
    summary = f"{len(rows)} input files, {_size(total)} in all"
    table = Table(("source", "role", "path", "resolved path", "bytes", "SHA-256"), rows)
    text = Text(
        f"Every file kgcm prepare read, with its size and the SHA-256 of its whole content, as "
        f"recorded in the store's {INPUTS} (its SHA-256 {digest}, kept in the store's "
        f"attributes); a folder's SHA-256 is that of its files' listing:"
    )
    return [text, Details(summary, table) if len(rows) > _FOLD_ROWS else table]


def _treatment_attrs(data: Path, name: str) -> dict[str, Any]:
    import xarray as xr

    try:
        with xr.open_zarr(data, consolidated=None) as ds:
            return dict(ds[name].attrs) if name in ds else {}
    except Exception:
        return {}


def _image(report_blocks: list[Block], run: Path, name: str, caption: str) -> bool:
    path = run / name
    if path.is_file():
        report_blocks.append(Image(path, caption))
        return True
    return False


def _seasons_table(seasons: dict[str, dict[str, Any]], units: str) -> Table:
    unit = f" ({units})" if units else ""
    rows = []
    for name, e in seasons.items():
        band = (
            f"[{_fmt(e.get('mean_lower'))}, {_fmt(e.get('mean_upper'))}]"
            if e.get("mean_lower") is not None
            else "–"
        )
        rows.append((name, _fmt(e.get("mean_effect")), band, _fmt(e.get("n_days"))))
    return Table(("season", f"mean effect{unit}", "mean interval ends", "days"), tuple(rows))


def _fit_report(run: Path, report: Report, log: Log) -> None:
    import tomllib

    config = tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    metrics = _read_json(run / "metrics.json") or {}
    effects = _read_json(run / "effects.json")
    units = "" if effects is None else str(effects.get("units", ""))
    data = Path(str(config.get("data", "")))
    outcome = str(config.get("outcome", ""))
    scenario = config.get("scenario", {})

    blocks = report.section("Provenance")
    blocks.append(Text("Files of the run folder (the SHA-256 recorded in its manifest.json):"))
    blocks.append(_files_table(run, log))
    log(f"reading the input store {data}")
    blocks.extend(_store_blocks(data))
    _run_json_blocks(run, blocks)

    blocks = report.section("Treatment")
    attrs = _treatment_attrs(data, str(config.get("treatment", "treatment")))
    rows = [
        ("variable", str(config.get("treatment", ""))),
        *(
            (k, _fmt(v))
            for k, v in attrs.items()
            if k in ("long_name", "units", "computed_from", "standard_name", "kgcm_treatment")
        ),
    ]
    blocks.append(Table(("treatment", "value"), tuple(rows)))
    kind, value = scenario.get("kind", "scale"), scenario.get("value", 1.5)
    path = f"T1 = {value:g} x T0" if kind == "scale" else f"T1 = T0 + {value:g}"
    blocks.append(
        Text(
            f"Scenario of kgcm effect: {path} over every day of each window "
            f"(the factual path T0 is the observed treatment)."
        )
    )

    blocks = report.section("Estimand and covariates")
    window = config.get("window")
    blocks.append(
        Text(
            f"The effect on {outcome} of replacing the factual treatment path T0 by {path} over a "
            f"{window}-step window, per cell and step: E[Y(T1) − Y(T0) | the covariates' history], "
            f"estimated by {config.get('estimator', {}).get('name')} and combined over windows "
            f"(docs/pipeline.md §3-4)."
        )
    )
    blocks.append(
        Table(
            ("part", "value"),
            (
                ("outcome", outcome),
                (
                    "time-varying covariates (confounders)",
                    ", ".join(config.get("covariates", [])) or "–",
                ),
                ("static covariates", ", ".join(config.get("static", [])) or "–"),
                ("day of year as covariates", _fmt(config.get("calendar"))),
                ("outcome on the day before the window", _fmt(config.get("prewindow_state"))),
                ("window, stride", f"{window}, {config.get('stride') or window}"),
                ("held out", f"{config.get('test_fraction')} by {config.get('split')}"),
                ("interval level", _fmt(1 - float(config.get("alpha", 0.05)))),
            ),
        )
    )

    report.section("Config").append(Code((run / "config.toml").read_text(encoding="utf-8")))
    _overlap_section(
        report, metrics.get("overlap"), None if effects is None else effects.get("overlap")
    )

    blocks = report.section("Metrics and references")
    if "references" in metrics:
        blocks.append(
            Text(
                f"Held-out factual RMSE on {metrics.get('n_test_units')} units (outcome sd "
                f"{_fmt(metrics.get('outcome_sd_test'))}); skill against the recent climatology:"
            )
        )
        blocks.append(
            Table(
                ("forecast", "RMSE", "skill", "what it is"),
                tuple(
                    (n, _fmt(r.get("rmse")), _fmt(r.get("skill"), 3), str(r.get("description", "")))
                    for n, r in metrics["references"].items()
                ),
            )
        )
        beaten = metrics.get("not_beaten") or []
        blocks.append(
            Text(
                f"The estimator does not beat {', '.join(beaten)}: its counterfactuals deserve no "
                f"more trust than that."
                if beaten
                else "The estimator beats every reference."
            )
        )
    _image(blocks, run, "fit_references.png", "held-out factual fit beside the references")

    blocks = report.section("Effects")
    if effects is None:
        blocks.append(
            Missing(
                "not run: `kgcm effect RUN` adds the effects, their seasonal "
                "summary, figures and the maps."
            )
        )
    else:
        blocks.append(
            Text(
                f"Scenario {effects.get('scenario')} on {effects.get('units')} units: mean effect "
                f"{_fmt(effects.get('mean_effect'))} {units} (held-out "
                f"{_fmt(effects.get('mean_effect_test'))} {units})."
            )
        )
        blocks.append(_seasons_table(effects.get("seasons", {}), units))
        if effects.get("sign_disagrees_in"):
            blocks.append(
                Text(
                    f"FLAG: the mean effect is not {effects.get('expected_sign')} in "
                    f"{', '.join(effects['sign_disagrees_in'])}."
                )
            )
        for name, caption in (
            ("effects_map.png", "time-mean effect"),
            ("effects_climatology.png", "the effect by day of year"),
            ("effects_seasons.png", "seasonal means with intervals"),
            ("effects_year.png", "one year in detail"),
        ):
            _image(blocks, run, name, caption)
    _maps_section(report, run, effects, units)
    _dose_section(report, run)
    _refute_section(report, run)

    blocks = report.section("Interval calibration")
    simulated = False
    if data.exists():
        import xarray as xr

        try:
            with xr.open_zarr(data, consolidated=None) as ds:
                simulated = str(ds.attrs.get("source", "")).startswith("kgcm.synthetic")
        except Exception:
            simulated = False
    if simulated:
        blocks.append(
            Text(
                "The store is simulated, so the truth exists, but this run does not measure its "
                "intervals' coverage: `kgcm demo` and `kgcm benchmark` do (docs/benchmarks.md), "
                "and `kgcm dose-response` draws the exact curve beside the estimate."
            )
        )
    else:
        blocks.append(
            Text(
                "Unknown on real data: there is no ground truth to check the intervals against. "
                "Their coverage on the simulators is in docs/benchmarks.md."
            )
        )


def _run_json_blocks(run: Path, blocks: list[Block]) -> None:
    info = _read_json(run / "run.json")
    if info is None:
        blocks.append(Missing("no run.json: versions and timings were not recorded."))
        return
    rows = tuple((k, _fmt(v)) for k, v in info.items() if k not in ("files", "overlap"))
    blocks.append(Table(("run.json", "value"), rows))


def _overlap_section(report: Report, fit: dict | None, effect: dict | None) -> None:
    blocks = report.section("Overlap diagnostic")
    if fit is None and effect is None:
        blocks.append(
            Missing(
                "no overlap report in metrics.json or effects.json (a run "
                "written before kgcm checked overlap): rerun kgcm fit."
            )
        )
        return
    rows = []
    for name, o in (
        ("treatment given the covariates (fit)", fit),
        ("with the scenario (effect)", effect),
    ):
        if o is not None:
            rows.append(
                (
                    name,
                    "ok" if o.get("ok") else "WEAK",
                    _fmt(o.get("r2"), 3),
                    _fmt(o.get("shift_sd"), 3),
                    str(o.get("message", "")),
                )
            )
    blocks.append(
        Table(
            ("check", "result", "held-out R² of T given X", "scenario shift (sd)", "message"),
            tuple(rows),
        )
    )


def _maps_section(report: Report, run: Path, effects: dict | None, units: str) -> None:
    blocks = report.section("Seasonal and regional maps")
    if effects is None:
        blocks.append(Missing("not run: `kgcm effect RUN` adds them."))
        return
    drawn = _image(
        blocks,
        run,
        "effects_seasons_map.png",
        "seasonal mean effect and interval width, north polar stereographic",
    )
    csv = run / "effects_regions.csv"
    if csv.is_file():
        import pandas as pd

        table = pd.read_csv(csv)
        rows = tuple(
            (
                str(r.season),
                str(r.region),
                str(int(r.n_cells)),
                _fmt(r.mean_effect),
                f"[{_fmt(getattr(r, 'mean_lower', None))}, {_fmt(getattr(r, 'mean_upper', None))}]",
            )
            for r in table.itertuples()
            if r.n_cells > 0 and pd.notna(r.mean_effect)
        )
        unit = f" ({units})" if units else ""
        blocks.append(
            Text(
                "Mean effect per sea and season (approximate sea outlines; seas "
                "and seasons without estimates left out):"
            )
        )
        blocks.append(
            Table(("season", "sea", "cells", f"mean effect{unit}", "mean interval ends"), rows)
        )
        _image(blocks, run, "effects_regions.png", "mean effect by sea and season")
    elif effects.get("regions"):
        blocks.append(Text(str(effects["regions"]).capitalize() + "."))
    elif not drawn:
        blocks.append(
            Missing(
                "not run: this effect run predates the maps; rerun `kgcm effect RUN` to add them."
            )
        )


def _dose_section(report: Report, run: Path) -> None:
    blocks = report.section("Dose-response")
    dose = _read_json(run / "dose_response.json")
    if dose is None:
        blocks.append(Missing("not run: `kgcm dose-response RUN` adds it."))
        return
    truth = dose.get("truth") is not None
    rows = []
    for r in dose.get("curve", []):
        band = (
            f"[{_fmt(r.get('effect_lower'))}, {_fmt(r.get('effect_upper'))}]"
            if r.get("effect_lower") is not None
            else "–"
        )
        row = (_fmt(r.get("strength")), str(r.get("period")), _fmt(r.get("effect")), band)
        rows.append((*row, _fmt(r.get("true_effect"))) if truth else row)
    header = ("s", "period", "effect", "interval", *(("true",) if truth else ()))
    blocks.append(Table(header, tuple(rows)))
    if dose.get("outside_support"):
        blocks.append(
            Text(
                f"Strengths outside the observed support (extrapolations): "
                f"{dose['outside_support']}."
            )
        )
    _image(blocks, run, "dose_response.png", "effect by scenario strength")


def _refute_section(report: Report, run: Path) -> None:
    blocks = report.section("Refutations")
    refute = _read_json(run / "refute.json")
    if refute is None:
        blocks.append(Missing("not run: `kgcm refute RUN` adds it."))
        return
    rows = tuple(
        (
            str(r.get("name")),
            _fmt(r.get("original_effect")),
            _fmt(r.get("new_effect")),
            _fmt(r.get("ratio"), 3),
            _fmt(r.get("threshold")),
            "pass" if r.get("passed") else "FAIL",
            str(r.get("description", "")),
        )
        for r in refute.get("results", [])
    )
    blocks.append(
        Table(("check", "original", "new", "ratio", "limit", "result", "what changed"), rows)
    )
    blocks.append(
        Text(
            "All checks pass: necessary, not sufficient (docs/pipeline.md §5)."
            if refute.get("passed")
            else "Some checks FAIL: see docs/pipeline.md §5."
        )
    )


def _demo_report(run: Path, report: Report, log: Log) -> None:
    import tomllib

    config = tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    metrics = _read_json(run / "metrics.json") or {}
    arctic = config.get("arctic", {})
    scenario = config.get("scenario", {})
    kind, value = scenario.get("kind", "scale"), scenario.get("value", 1.5)
    path = f"T1 = {value:g} x T0" if kind == "scale" else f"T1 = T0 + {value:g}"

    blocks = report.section("Provenance")
    blocks.append(Text("Files of the run folder (the SHA-256 recorded in its manifest.json):"))
    blocks.append(_files_table(run, log))
    blocks.append(
        Text(
            f"Inputs: none read from disk. The world is simulated by kgcm.synthetic.arctic "
            f"({arctic.get('ny')} x {arctic.get('nx')} cells, {arctic.get('days')} days, seed "
            f"{arctic.get('seed')}); config.toml reruns it exactly."
        )
    )
    _run_json_blocks(run, blocks)

    report.section("Treatment").append(
        Text(
            "The knowledge-guided velocity modulation of the arctic simulator, "
            "v_t = MA_w(speed)_t · (1 + α σ(k (Δh_t − τ))) with a hidden forcing share "
            f"(docs/simulators.md); the scenario is {path} over each window."
        )
    )
    blocks = report.section("Estimand and covariates")
    blocks.append(
        Text(
            f"The effect on sea-ice thickness of {path} over a {config.get('window')}-day window, "
            f"per cell and day, scored on the held-out cells against the simulator's exact effect."
        )
    )
    blocks.append(
        Table(
            ("part", "value"),
            (
                ("covariates", ", ".join(config.get("covariates", [])) or "–"),
                ("static covariates", ", ".join(config.get("static", [])) or "–"),
                ("day of year as covariates", _fmt(config.get("calendar"))),
                ("estimator", str(config.get("estimator", {}).get("name"))),
                ("held out", f"{config.get('test_fraction')} of the cells"),
            ),
        )
    )
    report.section("Config").append(Code((run / "config.toml").read_text(encoding="utf-8")))
    _overlap_section(report, metrics.get("overlap"), None)

    blocks = report.section("Metrics and references")
    from kgcm.experiments.demo import metrics_table

    blocks.append(
        Table(
            ("estimator", "PEHE", "ATE error", "factual RMSE", "coverage", "interval width"),
            tuple(tuple(r) for r in metrics_table(metrics)),
        )
    )
    truth = metrics.get("truth", {})
    blocks.append(
        Text(
            f"True effect on the held-out cells: mean {_fmt(truth.get('ate'))} m, RMS "
            f"{_fmt(truth.get('effect_rms'))} m; the zero-effect PEHE equals that "
            f"RMS."
        )
    )
    blocks = report.section("Effects")
    _image(blocks, run, "effect_map.png", "time-mean effect: estimated, true, difference")
    _image(blocks, run, "effect_timeseries.png", "a held-out cell: factual and counterfactual")
    report.section("Seasonal and regional maps").append(
        Missing(
            "not part of kgcm demo: `kgcm effect` on a `kgcm fit` run writes them (the demo's "
            "world covers only the Central Arctic)."
        )
    )
    report.section("Dose-response").append(
        Missing("not run: `kgcm dose-response` works on a `kgcm fit` run (docs/pipeline.md §5).")
    )
    report.section("Refutations").append(
        Missing("not run: `kgcm refute` works on a `kgcm fit` run (docs/pipeline.md §5).")
    )
    blocks = report.section("Interval calibration")
    rows = tuple(
        (name, _fmt(row.get("coverage"), 3), _fmt(row.get("interval_width")))
        for name, row in metrics.items()
        if isinstance(row, dict) and "coverage" in row
    )
    if rows:
        level = 1 - float(config.get("alpha", 0.05))
        blocks.append(
            Text(f"Measured on the held-out cells against the exact effect (nominal {level:.0%}):")
        )
        blocks.append(Table(("estimator", "coverage", "mean width (m)"), rows))
    else:
        blocks.append(Missing("the estimator gives no intervals: no coverage to report."))


def _final_path(run: Path) -> Path:
    """The folder a staging folder of :func:`kgcm._io.output_folder` becomes (``.NAME.<id>.partial``
    → ``NAME``): ``kgcm demo`` writes its report inside its own transaction."""
    import re

    match = re.fullmatch(r"\.(.+)\.[0-9a-f]{12}\.partial", run.name)
    return run.parent / match.group(1) if match else run


def build_report(run_dir: str | os.PathLike[str], *, log: Log = print) -> Report:
    """The report's content for a ``kgcm fit`` run or a ``kgcm demo`` folder."""
    from kgcm import __version__

    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run} is not a folder; give the folder kgcm fit or kgcm demo wrote.")
    if not (run / "config.toml").is_file():
        raise DataError(f"{run} has no config.toml: not a kgcm run folder (kgcm fit or demo).")
    kind = _kind(run)
    what = "kgcm fit run" if kind == "fit" else "kgcm demo"
    shown = _final_path(run.resolve())
    report = Report(
        title=f"kgcm report: {shown.name}",
        subtitle=f"{what} in {shown}; report by kgcm {__version__}",
    )
    (_fit_report if kind == "fit" else _demo_report)(run, report, log)
    return report


# --- rendering --------------------------------------------------------------------------------

_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1a1a1a;
background:#ffffff;line-height:1.45}
h1{border-bottom:3px solid #1f5f8b;padding-bottom:.3em;color:#1f5f8b}
h2{margin-top:1.8em;border-bottom:1px solid #c8d6e0;color:#1f5f8b}
.sub{color:#555}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #c8d6e0;padding:.25em .6em;text-align:left;vertical-align:top;
word-break:break-word}
th{background:#e8f0f6}
tr:nth-child(even) td{background:#f6f9fb}
pre{background:#f3f3f0;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:.85em}
.missing{background:#fff4d6;border-left:4px solid #d9a400;padding:.5em .8em}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
nav{background:#f3f7fa;padding:.6em 1em;border:1px solid #c8d6e0}
details{margin:.8em 0}
summary{cursor:pointer;color:#1f5f8b}
"""


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def _html_table(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures as base64 PNG, inline CSS)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f'<p class="sub">{e(report.subtitle)}</p>',
        "<nav>"
        + " · ".join(f'<a href="#{_anchor(n)}">{e(n)}</a>' for n, _ in report.sections)
        + "</nav>",
    ]
    for name, blocks in report.sections:
        parts.append(f'<h2 id="{_anchor(name)}">{e(name)}</h2>')
        for b in blocks:
            if isinstance(b, Text):
                parts.append(f"<p>{e(b.text)}</p>")
            elif isinstance(b, Missing):
                parts.append(f'<p class="missing">{e(b.text)}</p>')
            elif isinstance(b, Code):
                parts.append(f"<pre>{e(b.text)}</pre>")
            elif isinstance(b, Table):
                parts.append(_html_table(b))
            elif isinstance(b, Details):
                parts.append(
                    f"<details><summary>{e(b.summary)}</summary>{_html_table(b.table)}</details>"
                )
            else:
                data = base64.b64encode(b.path.read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(b.path.name)}: {e(b.caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """The report as Markdown; figures are linked by their names in the run folder."""
    lines = [f"# {report.title}", "", f"_{report.subtitle}_", ""]
    for name, blocks in report.sections:
        lines += [f"## {name}", ""]
        for b in blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Missing):
                lines += [f"> **Not available.** {b.text}", ""]
            elif isinstance(b, Code):
                lines += ["```toml", b.text.rstrip("\n"), "```", ""]
            elif isinstance(b, Table | Details):
                table = b if isinstance(b, Table) else b.table
                if isinstance(b, Details):
                    lines += [f"{b.summary}:", ""]
                lines.append("| " + " | ".join(map(_md_cell, table.header)) + " |")
                lines.append("|" + "---|" * len(table.header))
                lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows]
                lines.append("")
            else:
                lines += [f"![{b.caption}]({b.path.name})", ""]
    return "\n".join(lines)


#: the files ``kgcm report`` writes into the run folder
_OUTPUTS = ("report.html", "report.md")


def write_report(run_dir: str | os.PathLike[str], *, log: Log = print) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into the run folder, each atomically.

    Returns their paths.
    """
    run = Path(run_dir)
    log(f"building the report of {run}")
    report = build_report(run, log=log)
    log(f"embedding {len(report.images)} figures")
    page = render_html(report)
    html_path = atomic_write_text(run / _OUTPUTS[0], page)
    md_path = atomic_write_text(run / _OUTPUTS[1], render_markdown(report) + "\n")
    log(f"wrote {html_path} ({_size(len(page.encode()))}) and {md_path}")
    return html_path, md_path
