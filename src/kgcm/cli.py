"""The ``kgcm`` command line: thin; it parses, calls the library and prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kgcm import __version__
from kgcm.errors import KgcmError

app = typer.Typer(
    name="kgcm",
    help="Causal effects of SSH and ocean velocity on Arctic sea-ice thickness (KGCM-VAE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
stdout = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML or YAML config; defaults when omitted.")
]
AllowWeakOpt = Annotated[
    bool,
    typer.Option(
        "--allow-weak-overlap",
        help="Run even when kgcm.check_overlap finds weak overlap (the treatment nearly a "
        "function of the covariates, or a scenario far outside the data); the warning is "
        "printed and written into the outputs.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a config key, e.g. --set arctic.ny=16 (repeatable)."
    ),
]


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def demo(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    allow_weak_overlap: AllowWeakOpt = False,
) -> None:
    """Run the main job on the embedded arctic simulator and write the outputs.

    Simulate, fit KGCM-VAE on training cells, estimate effects on held-out cells, print the
    metrics beside the zero-effect reference, and write effects.nc, figures, metrics.json,
    config.toml, model.kgcm and run.json to --out.
    """
    from kgcm.config import load_config
    from kgcm.experiments.demo import DemoConfig, metrics_table, run_demo

    try:
        cfg = load_config(DemoConfig, config, set_ or ())
        with console.status("working...", spinner="dots") as status:

            def log(msg: str) -> None:
                console.log(escape(msg))
                status.update(msg)

            result = run_demo(cfg, out, log=log, allow_weak_overlap=allow_weak_overlap)
    except KgcmError as exc:
        _fail(exc)
        return
    table = Table(title="Effects on held-out cells (m of sea-ice thickness)")
    for col in ("estimator", "PEHE", "ATE error", "factual RMSE", "coverage", "interval width"):
        table.add_column(col, justify="right" if col != "estimator" else "left")
    for row in metrics_table(result.metrics):
        table.add_row(*row)
    stdout.print(table)
    truth = result.metrics["truth"]
    stdout.print(
        f"true effect: mean {truth['ate']:.4f} m, RMS {truth['effect_rms']:.4f} m over "
        f"{truth['n_units']} held-out sequences; the zero-effect PEHE equals that RMS."
    )
    stdout.print(f"outputs in {result.out_dir} (fit took {result.seconds['fit']:.0f} s)")


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="NetCDF file to write.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write the arctic simulator's observables to a CF NetCDF file."""
    from kgcm._io import output_file
    from kgcm.config import load_config
    from kgcm.experiments.demo import DemoConfig
    from kgcm.synthetic.arctic import simulate_arctic

    try:
        cfg = load_config(DemoConfig, config, set_ or ())
        sim = simulate_arctic(cfg.arctic)
    except KgcmError as exc:
        _fail(exc)
        return
    try:
        with output_file(out, _is_simulation) as tmp:
            sim.dataset.to_netcdf(tmp, engine="netcdf4")
    except KgcmError as exc:
        _fail(exc)
        return
    stdout.print(f"wrote {out} ({dict(sim.dataset.sizes)})")


def _is_simulation(path: Path) -> bool:
    """Whether ``path`` is a file ``kgcm simulate`` wrote (the only kind it replaces)."""
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            return str(ds.attrs.get("title", "")).startswith("kgcm arctic simulator")
    except Exception:
        return False


@app.command()
def estimators() -> None:
    """List the registered estimators and their capabilities."""
    from kgcm.estimators import estimator_class, list_estimators

    table = Table(title="Registered estimators")
    table.add_column("name")
    table.add_column("intervals")
    table.add_column("needs covariates")
    table.add_column("summary")
    for name in list_estimators():
        cls = estimator_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        table.add_row(
            name, str(cls.tags.get("intervals")), str(cls.tags.get("needs_covariates")), doc
        )
    stdout.print(table)


@app.command()
def readers() -> None:
    """List the product readers (kgcm.open_dataset, kgcm prepare)."""
    from kgcm.readers import reader_table

    table = Table(title="Product readers")
    for col in ("name", "time step", "variables", "product"):
        table.add_column(col)
    for row in reader_table():
        table.add_row(*row)
    stdout.print(table)


def _run_logged(work):  # type: ignore[no-untyped-def]
    """Run ``work(log)`` with log lines on stderr; KgcmError becomes a clean exit 2."""

    def log(msg: str) -> None:
        console.log(escape(msg))

    try:
        return work(log)
    except KgcmError as exc:
        _fail(exc)
        return None


@app.command()
def prepare(
    config: Annotated[Path, typer.Option("--config", "-c", help="Prepare config (TOML/YAML).")],
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Zarr store to write (overrides output).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Read product files, align them on one grid and time step, build the treatment, and
    write an analysis-ready Zarr store (paths in the config are relative to the config file).
    """
    from kgcm.config import load_config
    from kgcm.prepare import PrepareConfig, run_prepare

    def work(log):  # type: ignore[no-untyped-def]
        overrides = list(set_ or ())
        if out is not None:
            overrides.append(f"output={str(out.resolve())!r}")
        if overwrite:
            overrides.append("overwrite=true")
        cfg = load_config(PrepareConfig, config, overrides)
        return run_prepare(cfg, base_dir=config.resolve().parent, log=log, progress=progress)

    result = _run_logged(work)
    if result is not None:
        stdout.print(
            f"wrote {result.path}: {dict(result.sizes)}, variables {list(result.variables)}; "
            f"{result.cell_days:,} cell-days in {result.seconds:.1f} s"
        )


@app.command()
def fit(
    config: Annotated[Path, typer.Option("--config", "-c", help="Fit config (TOML/YAML).")],
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path(
        "runs/fit"
    ),
    allow_weak_overlap: AllowWeakOpt = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            help="Train on N processes of this machine with PyTorch DDP (gloo on CPU, NCCL on "
            "GPUs); for several machines launch `torchrun ... -m kgcm fit` instead.",
        ),
    ] = 1,
) -> None:
    """Fit an estimator on a prepared store; writes model.kgcm, config, split and metrics.

    Neural fits checkpoint after every epoch beside the run folder; the same command started
    again after an interruption continues from the last finished epoch.
    """
    from kgcm import distributed
    from kgcm.config import load_config
    from kgcm.experiments.fit import FitConfig, run_fit

    if nproc < 1:
        _fail(KgcmError(f"--nproc must be at least 1; got {nproc}."))
    if nproc > 1 and not distributed.launched():
        argv = ["fit", "--config", str(config), "--out", str(out)]
        argv += [a for s in set_ or () for a in ("--set", s)]
        argv += ["--allow-weak-overlap"] if allow_weak_overlap else []
        raise typer.Exit(code=distributed.launch(nproc, argv))
    rank = int(os.environ.get("RANK", "0")) if distributed.launched() else 0

    def work(log):  # type: ignore[no-untyped-def]
        cfg = load_config(FitConfig, config, set_ or ())
        return run_fit(
            cfg,
            out,
            base_dir=config.resolve().parent,
            log=log if rank == 0 else (lambda m: None),
            allow_weak_overlap=allow_weak_overlap,
        )

    result = _run_logged(work)
    if result is not None and rank == 0:
        stdout.print_json(data=result.metrics)


@app.command()
def effect(
    run: Annotated[Path, typer.Argument(help="Run folder written by kgcm fit.")],
    scale: Annotated[
        float | None, typer.Option(help="Scenario T1 = scale x T0 (default: the run's).")
    ] = None,
    shift: Annotated[float | None, typer.Option(help="Scenario T1 = T0 + shift.")] = None,
    units: Annotated[str, typer.Option(help="'all' units or only the held-out 'test' ones.")] = (
        "all"
    ),
    alpha: Annotated[float | None, typer.Option(help="Interval level 1 - alpha.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="NetCDF to write (default RUN/effects.nc).")
    ] = None,
    year: Annotated[
        int | None, typer.Option(help="Year drawn in detail (default: the latest full one).")
    ] = None,
    allow_weak_overlap: AllowWeakOpt = False,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar over the units (KGCM-VAE).")
    ] = True,
    tiles: Annotated[
        bool,
        typer.Option(
            "--tiles",
            help="Every unit of the store, block by block, into a Zarr store (--out, default "
            "RUN-effects.zarr beside the run); memory bounded by a block; resumable.",
        ),
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="--tiles: a running dask scheduler's address.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="--tiles: local dask worker processes (default one per core; 0: none)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="--tiles: start the output over.")
    ] = False,
    netcdf: Annotated[
        Path | None,
        typer.Option(help="--tiles: also copy the finished Zarr store into this NetCDF file."),
    ] = None,
) -> None:
    """Effects of a treatment scenario with intervals, written as CF NetCDF plus figures:
    seasonal means, the effect by day of year, one year in detail (and maps for a grid).
    With --tiles: effects and intervals of every unit, written to Zarr tile by tile on
    dask.distributed (a local cluster, or --scheduler)."""
    from kgcm.errors import ConfigError
    from kgcm.experiments.fit import run_effect
    from kgcm.treatments import Scenario

    def work(log):  # type: ignore[no-untyped-def]
        if scale is not None and shift is not None:
            raise ConfigError("give --scale or --shift, not both.")
        scenario = None
        if scale is not None:
            scenario = Scenario(kind="scale", value=scale)
        elif shift is not None:
            scenario = Scenario(kind="shift", value=shift)
        if not tiles and (scheduler is not None or workers is not None or restart or netcdf):
            raise ConfigError("--scheduler, --workers, --restart and --netcdf go with --tiles.")
        if tiles:
            if units != "all" or year is not None:
                raise ConfigError("--tiles computes every unit; --units and --year do not apply.")
            from kgcm.experiments.tiled import run_tiled_effect

            return run_tiled_effect(
                run, scenario=scenario, out=out, alpha=alpha, scheduler=scheduler,
                workers=workers, restart=restart, allow_weak_overlap=allow_weak_overlap,
                progress=progress and sys.stderr.isatty(), netcdf=netcdf, log=log,
            )  # fmt: skip
        return run_effect(
            run,
            scenario=scenario,
            units=units,
            out=out,
            alpha=alpha,
            year=year,
            log=log,
            allow_weak_overlap=allow_weak_overlap,
            progress=progress,
        )

    summary = _run_logged(work)
    if summary is not None:
        stdout.print_json(data=summary)


@app.command("dose-response")
def dose_response(
    run: Annotated[Path, typer.Argument(help="Run folder written by kgcm fit.")],
    scales: Annotated[
        str,
        typer.Option(help="Scenario strengths s: T1 = s x T0 (a shift run: T1 = T0 + s x shift)."),
    ] = "0.5,0.75,1,1.25,1.5,2",
    units: Annotated[str, typer.Option(help="'all' units or only the held-out 'test' ones.")] = (
        "all"
    ),
    alpha: Annotated[float | None, typer.Option(help="Interval level 1 - alpha.")] = None,
    allow_weak_overlap: AllowWeakOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """The effect as a function of the scenario's strength, over the whole period and per
    season, with bands (and the true curve on the arctic simulator): dose_response.nc, .csv,
    .json and .png in the run folder."""
    from kgcm.experiments.dose_response import parse_strengths, run_dose_response

    def work(log):  # type: ignore[no-untyped-def]
        return run_dose_response(
            run,
            strengths=parse_strengths(scales),
            units=units,
            alpha=alpha,
            log=log,
            allow_weak_overlap=allow_weak_overlap,
            progress=progress,
        )

    summary = _run_logged(work)
    if summary is None:
        return
    table = Table(title=f"Dose-response: mean effect on {summary['outcome']}")
    has_truth = summary["truth"] is not None
    for column in ("s", "period", "effect", "interval", *(("true",) if has_truth else ())):
        table.add_column(column, justify="right")
    for row in summary["curve"]:
        band = (
            f"[{row['effect_lower']:.4g}, {row['effect_upper']:.4g}]"
            if row.get("effect_lower") is not None
            else ""
        )
        cells = [f"{row['strength']:g}", row["period"],
                 "" if row["effect"] is None else f"{row['effect']:.4g}", band]  # fmt: skip
        if has_truth:
            cells.append("" if row["true_effect"] is None else f"{row['true_effect']:.4g}")
        table.add_row(*cells)
    stdout.print(table)


@app.command()
def refute(
    run: Annotated[Path, typer.Argument(help="Run folder written by kgcm fit.")],
    epochs: Annotated[
        int | None,
        typer.Option(help="Training epochs of every refit (quick checks); default: the run's."),
    ] = None,
    checks: Annotated[
        str | None,
        typer.Option(help="Comma-separated subset of the checks (default: all of them)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the refits.")] = True,
) -> None:
    """Refutation checks (placebo treatment in time and across units, dummy outcome, random
    common cause, data subset, overlap): each refits the run's estimator and prints its
    numbers with pass/FAIL; writes refute.json and refute.md in the run folder."""
    from kgcm.experiments.refute import REFUTERS, refutation_table, run_refute

    def work(log):  # type: ignore[no-untyped-def]
        chosen = REFUTERS if checks is None else tuple(c.strip() for c in checks.split(","))
        return run_refute(run, epochs=epochs, checks=chosen, log=log, progress=progress)

    results = _run_logged(work)
    if results is None:
        return
    stdout.print(refutation_table(results), soft_wrap=True)
    for r in results:
        if r.note:
            stdout.print(f"{r.name}: {escape(r.note)}", soft_wrap=True)
    failed = [r.name for r in results if not r.passed]
    stdout.print("all checks pass" if not failed else f"FAILED: {', '.join(failed)}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder written by kgcm fit or kgcm demo.")],
) -> None:
    """One self-contained offline HTML report of a run folder (figures embedded) and its
    Markdown twin: provenance, treatment, estimand, config, overlap, metrics, effects, maps,
    dose-response, refutations and interval calibration; report.html and report.md in RUN."""
    from kgcm.experiments.report import write_report

    def work(log):  # type: ignore[no-untyped-def]
        return write_report(run, log=log)

    written = _run_logged(work)
    if written is not None:
        for path in written:
            stdout.print(f"wrote {escape(str(path))}", soft_wrap=True)


@app.command()
def benchmark(
    config: Annotated[Path, typer.Option("--config", "-c", help="Benchmark config (TOML/YAML).")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run datasets x estimators x seeds in parallel; write results.csv, table.md, paired.md
    (differences to the reference with intervals) and pehe.png. Resumable: cells already run
    with the same settings are kept, cells whose settings changed are rerun."""
    _run_grid(config, set_, out, progress, ablation=False)


@app.command()
def tune(
    config: Annotated[Path, typer.Option("--config", "-c", help="Benchmark config (TOML/YAML).")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Search each estimator's `search` knobs on the config's tuning_seeds (the same number of
    candidates for every searched estimator), keep the lowest held-out factual RMSE, and
    write tuning.md and tuned.toml (evaluate it with kgcm benchmark --config OUT/tuned.toml).
    Resumable like kgcm benchmark."""
    from kgcm.config import load_config
    from kgcm.experiments.benchmark import BenchmarkConfig
    from kgcm.experiments.tuning import run_tuning

    def work(log):  # type: ignore[no-untyped-def]
        cfg = load_config(BenchmarkConfig, config, set_ or ())
        run_tuning(cfg, out=out, base_dir=Path.cwd(), log=log, progress=progress)
        return out or Path(cfg.out + "-tuning")

    folder = _run_logged(work)
    if folder is not None:
        stdout.print((folder / "tuning.md").read_text())


@app.command()
def ablate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Ablation config (TOML/YAML).")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """KGCM-VAE with MMD, adjacency, prior and decoder switched on and off, same seeds; the
    same outputs as kgcm benchmark, with the full model as the paired reference."""
    _run_grid(config, set_, out, progress, ablation=True)


def _run_grid(
    config: Path, set_: list[str] | None, out: Path | None, progress: bool, *, ablation: bool
) -> None:
    from kgcm.config import load_config
    from kgcm.experiments.benchmark import (
        AblateConfig,
        BenchmarkConfig,
        ablation_benchmark,
        run_benchmark,
    )

    def work(log):  # type: ignore[no-untyped-def]
        if ablation:
            cfg = ablation_benchmark(load_config(AblateConfig, config, set_ or ()))
        else:
            cfg = load_config(BenchmarkConfig, config, set_ or ())
        run_benchmark(cfg, out=out, base_dir=Path.cwd(), log=log, progress=progress)
        return out or Path(cfg.out)

    folder = _run_logged(work)
    if folder is not None:
        stdout.print((folder / "table.md").read_text())
        stdout.print((folder / "paired.md").read_text())


@app.command()
def version() -> None:
    """Print the kgcm version."""
    stdout.print(__version__)


@app.command()
def fetch(
    product: Annotated[
        str, typer.Option("--product", "-p", help="Product: cmems-glorys12 or cmems-topaz.")
    ],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD (inclusive).")],
    variables: Annotated[
        str, typer.Option(help="Comma-separated variables (the product's or canonical names).")
    ] = "sithick,zos,uo,vo",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data"),
    bbox: Annotated[
        str, typer.Option(help="lat_min,lat_max,lon_min,lon_max in degrees.")
    ] = "60,90,-180,180",
    depth: Annotated[
        str | None,
        typer.Option(help="min,max depth in m for variables with depth (default: the surface)."),
    ] = None,
    split: Annotated[str, typer.Option(help="One file ('none'), or one per 'year'/'month'.")] = (
        "none"
    ),
    dataset_id: Annotated[
        str | None, typer.Option(help="Another dataset of the product (GLORYS12 interim).")
    ] = None,
    skip_existing: Annotated[
        bool, typer.Option(help="Skip files already downloaded (resume a split download).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the requests as JSON; download nothing.")
    ] = False,
) -> None:
    """Download Arctic fields from Copernicus Marine, or print the requests (--dry-run).

    Downloading needs the copernicusmarine package (the kgcm extra named fetch) and a free
    Copernicus Marine account (`copernicusmarine login` once). See docs/data.md.
    """
    import json

    from kgcm.errors import ConfigError
    from kgcm.fetch import (
        CREDENTIALS_HINT,
        build_requests,
        download,
        get_product,
        import_copernicusmarine,
    )

    def numbers(text: str, what: str, n: int) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != n:
            raise ConfigError(f"--{what} needs {n} comma-separated numbers; got {text!r}.")
        return values

    try:
        spec = get_product(product)
        requests = build_requests(
            product,
            variables,
            start,
            end,
            out=out,
            bbox=numbers(bbox, "bbox", 4),  # type: ignore[arg-type]
            depth=None if depth is None else numbers(depth, "depth", 2),  # type: ignore[arg-type]
            split=split,  # type: ignore[arg-type]
            dataset_id=dataset_id,
            skip_existing=skip_existing,
        )
        if dry_run:
            listing = {
                "product": spec.name,
                "product_id": spec.product_id,
                "note": spec.note,
                "requests": [r.to_kwargs() for r in requests],
            }
            typer.echo(json.dumps(listing, indent=2))
            return
        import_copernicusmarine()  # a missing package is reported before anything else
        console.print(escape(CREDENTIALS_HINT), soft_wrap=True)
        written = download(requests, log=lambda msg: console.log(escape(msg)))
    except KgcmError as exc:
        _fail(exc)
        return
    for path in written:
        stdout.print(f"wrote {escape(str(path))}", soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KgcmError as exc:  # pragma: no cover - commands catch their own
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
