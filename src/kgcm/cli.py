"""The ``kgcm`` command line: thin; it parses, calls the library and prints."""

from __future__ import annotations

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
) -> None:
    """Run the main job on the embedded arctic simulator and write the outputs.

    Simulate, fit KGCM-VAE on training cells, estimate effects on held-out cells, print the
    metrics beside the zero-effect reference, and write effects.nc, figures, metrics.json,
    config.toml, model.kgcm and run.json to --out.
    """
    from kgcm.config import DemoConfig, load_config
    from kgcm.experiments.demo import metrics_table, run_demo

    try:
        cfg = load_config(DemoConfig, config, set_ or ())
        with console.status("working...", spinner="dots") as status:

            def log(msg: str) -> None:
                console.log(escape(msg))
                status.update(msg)

            result = run_demo(cfg, out, log=log)
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
    from kgcm._io import atomic_path
    from kgcm.config import DemoConfig, load_config
    from kgcm.synthetic.arctic import simulate_arctic

    try:
        cfg = load_config(DemoConfig, config, set_ or ())
        sim = simulate_arctic(cfg.arctic)
    except KgcmError as exc:
        _fail(exc)
        return
    with atomic_path(out) as tmp:
        sim.dataset.to_netcdf(tmp, engine="netcdf4")
    stdout.print(f"wrote {out} ({dict(sim.dataset.sizes)})")


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
def version() -> None:
    """Print the kgcm version."""
    stdout.print(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KgcmError as exc:  # pragma: no cover - commands catch their own
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
