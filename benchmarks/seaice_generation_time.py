"""Generation time of cached ``seaice`` worlds, from the seconds each Zarr group records.

Every branch of a world (the factual run and each scenario re-run) stores its simulated days
(``days_done``) and the seconds they took (``seconds``). Usage:

    python benchmarks/seaice_generation_time.py runs/worlds [cells_per_world]

``cells_per_world``: grid cells (land included) to divide by, e.g. 192 for 16 x 12.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    root = Path(argv[0])
    cells = int(argv[1]) if len(argv) > 1 else 1
    all_s = all_d = 0.0
    for world in sorted(root.glob("seaice-*.zarr")):
        seconds = days = 0.0
        factual = (0.0, 0.0)
        for meta in world.rglob("zarr.json"):
            attrs = json.loads(meta.read_text()).get("attributes", {})
            if "seconds" in attrs and "days_done" in attrs:
                seconds += attrs["seconds"]
                days += attrs["days_done"]
                if meta.parent.name == "factual":
                    factual = (attrs["seconds"], attrs["days_done"])
        all_s, all_d = all_s + seconds, all_d + days
        print(
            f"{world.name}: factual {factual[1]:.0f} days in {factual[0]:.0f} s "
            f"({factual[0] / factual[1]:.2f} s/day); all runs {days:.0f} days in {seconds:.0f} s "
            f"({seconds / days:.2f} s/day, {1000 * seconds / days / cells:.1f} ms/day/cell)"
        )
    print(
        f"total: {all_d:.0f} simulated days in {all_s:.0f} s: {all_s / all_d:.2f} s/day, "
        f"{1000 * all_s / all_d / cells:.1f} ms per day per cell"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
