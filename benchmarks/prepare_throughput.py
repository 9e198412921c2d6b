"""Throughput and peak memory of ``kgcm prepare`` on generated product files of growing size.

For each record length, writes GLORYS12-layout daily files (``kgcm.synthetic.products``; float32,
one file a day, the toolbox layout) on a fixed grid, then runs the whole preparation (read,
velocity-modulation treatment, streamed Zarr write) in a fresh process and reports cell-days per
second and that process's peak resident memory. Peak memory should stay about flat as the record
grows, because writing streams one Zarr time chunk at a time.

    .venv/bin/python benchmarks/prepare_throughput.py          # 4 sizes, the largest > 8 GiB
    .venv/bin/python benchmarks/prepare_throughput.py --days 5 10 --ny 100 --nx 200   # quick look

Disk: the largest default size needs about 9 GB for inputs plus about as much for the store;
each size's files are deleted after it is measured (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _common import machine

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from kgcm.config import from_dict
    from kgcm.prepare import PrepareConfig, run_prepare
    cfg = from_dict(PrepareConfig, json.loads(sys.argv[1]))
    t = time.perf_counter()
    r = run_prepare(cfg, log=lambda m: None, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t, "cell_days": r.cell_days,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[10, 40, 120, 360])
    parser.add_argument("--ny", type=int, default=800)
    parser.add_argument("--nx", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("runs/bench-prepare"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    from kgcm.synthetic.products import write_product

    print(machine())
    print(f"grid {args.ny} x {args.nx} = {args.ny * args.nx:,} cells; variables sithick, zos, "
          f"uo, vo (float32); one file a day")  # fmt: skip
    rows = []
    for days in args.days:
        root = args.dir / f"days-{days}"
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        write_product("cmems-glorys12", root / "in", ny=args.ny, nx=args.nx, days=days,
                      packed=False, variables=("sithick", "zos", "uo", "vo"))  # fmt: skip
        write_s = time.perf_counter() - t
        size = du(root / "in")
        config = {
            "output": str(root / "store.zarr"),
            "sources": [{"name": "glorys", "paths": str(root / "in" / "*.nc"),
                         "product": "cmems-glorys12"}],
        }  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            print(proc.stderr)
            raise SystemExit(f"prepare failed for {days} days")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update(days=days, input_gib=size / 2**30, output_gib=du(root / "store.zarr") / 2**30,
                   write_inputs_s=write_s)  # fmt: skip
        res["cell_days_per_s"] = res["cell_days"] / res["seconds"]
        rows.append(res)
        print(f"{days:4d} days: input {res['input_gib']:.2f} GiB, prepare {res['seconds']:.1f} s, "
              f"{res['cell_days_per_s']:,.0f} cell-days/s, "
              f"peak RSS {res['peak_rss_mib']:,.0f} MiB, "
              f"store {res['output_gib']:.2f} GiB", flush=True)  # fmt: skip
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("| days | input on disk (GiB) | cell-days | prepare (s) | cell-days/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['days']} | {r['input_gib']:.2f} | {r['cell_days']:,} | {r['seconds']:.1f} | "
              f"{r['cell_days_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |")  # fmt: skip
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
