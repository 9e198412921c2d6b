"""Fuzz and fault suite: malformed inputs, damaged files, kills and concurrent runs.

Every case must end in one of: a result, or a kgcm error that names the problem. Never a raw
exception, never a hang (each case runs under a time limit), never a lost or mixed output.

- malformed arrays into estimators and malformed configs into the loaders (Hypothesis);
- each product reader on truncated, overwritten and emptied copies of its files;
- ``kgcm demo``, ``kgcm fit`` and ``kgcm prepare`` killed with SIGKILL at random moments, then
  run again: the output is absent or complete (its manifest checks) after the kill, and
  complete and equal to an uninterrupted run after the rerun;
- two runs on one output at the same time (fit; demo in the slow suite): one gets "in use",
  the other completes.

The default suite runs a small number of cases (fit and prepare killed once each, fits run
concurrently; about 3 minutes on 2 shared cores); the ``slow`` tests kill a benchmark. The
demo (killed once, two demos on one output: the same transaction and lock as fit's) and
several kills per command run only when asked for: ``KGCM_FAULT_KILLS=3`` (the figures in
docs/reliability.md) or ``KGCM_FULL=1`` (8 kills, the demo cases, and more fuzz cases).
With ``KGCM_RELIABILITY_REPORT=<file.json>`` the counts are written there (docs/reliability.md
records them).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kgcm
from kgcm._io import verify_folder
from kgcm.errors import KgcmError

PY = sys.executable
SRC = str(Path(kgcm.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
FULL = bool(os.environ.get("KGCM_FULL"))
#: SIGKILLs per command in the multi-kill variants: KGCM_FAULT_KILLS, or 8 with KGCM_FULL=1;
#: 0 (not run) otherwise, which keeps the default suite short (they cost about 3.5 minutes)
SLOW_KILLS = int(os.environ.get("KGCM_FAULT_KILLS", 8 if FULL else 0))
KILLS = [1] + ([pytest.param(SLOW_KILLS, marks=pytest.mark.slow)] if SLOW_KILLS > 1 else [])

#: (suite, kind, outcome) -> count; written to KGCM_RELIABILITY_REPORT at the end
TALLY: collections.Counter[tuple[str, str, str]] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("KGCM_RELIABILITY_REPORT")
    if path:
        old = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        for (suite, kind, outcome), n in TALLY.items():
            key = f"{suite} | {kind} | {outcome}"
            old[key] = old.get(key, 0) + n
        Path(path).write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def time_limit(seconds: float, case: str):
    """Fail the case (instead of hanging the suite) when it runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"{case}: no answer within {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome_of(call, case: str, limit: float = 30.0) -> str:
    """Run ``call``; "ok" or "refused" (a kgcm error); anything else fails the test."""
    with time_limit(limit, case):
        try:
            call()
        except KgcmError as exc:
            assert str(exc).strip(), f"{case}: an error without a message"
            return "refused"
    return "ok"


# --------------------------------------------------------------------------------------------
# malformed arrays


_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 1e300, -1e300, 1e-300]),
)


def _array():
    """Any shape (0 to 4 dims, empty sides included), any dtype, any value."""

    def build(dtype, shape):
        elements = {
            "f8": _FLOATS,
            "f4": st.floats(width=32, allow_nan=True, allow_infinity=True),
            "i8": st.integers(-(10**6), 10**6),
            "c16": st.complex_numbers(max_magnitude=10),
            "U3": st.text(alphabet="ab1.", max_size=3),
            "O": st.one_of(st.none(), st.text(alphabet="ab", max_size=2), st.floats()),
            "bool": st.booleans(),
        }[dtype]
        return hnp.arrays(dtype, shape, elements=elements)

    dtypes = st.sampled_from(["f8", "f4", "i8", "bool", "c16", "U3", "O"])
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    return st.tuples(dtypes, shapes).flatmap(lambda a: build(*a))


@st.composite
def _inputs(draw):
    """``(Y, T, X)``: half of the time well shaped (clean or extreme values), else anything."""
    if draw(st.booleans()):
        return draw(_array()), draw(_array()), draw(st.one_of(st.none(), _array()))
    n, t, p = draw(st.integers(0, 8)), draw(st.integers(0, 5)), draw(st.integers(0, 3))
    values = st.floats(-10, 10) if draw(st.booleans()) else _FLOATS
    Y = draw(hnp.arrays("f8", (n, t), elements=values))
    T = draw(hnp.arrays("f8", (n, t), elements=values))
    X = draw(st.one_of(st.none(), hnp.arrays("f8", (n, t, p), elements=values)))
    return Y, T, X


def _as_input(array, kind):
    """Sometimes a DataArray with canonical, swapped or made-up dim names."""
    if kind == "dataarray" and array.ndim in (2, 3):
        names = [("unit", "step", "feature"), ("time", "unit", "x"), ("a", "b", "c")]
        return xr.DataArray(array, dims=names[array.size % 3][: array.ndim])
    return array


@settings(
    max_examples=400 if FULL else 80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    name=st.sampled_from(["zero-effect", "linear-dml", "s-learner"]),
    inputs=_inputs(),
    kind=st.sampled_from(["array", "dataarray"]),
)
def test_malformed_arrays_never_crash(name, inputs, kind) -> None:
    Y, T, X = inputs
    params = {"s-learner": {"n_estimators": 5}}.get(name, {})
    est = kgcm.make_estimator(name, **params)
    Xi = None if X is None else _as_input(X, kind)
    result = outcome_of(lambda: est.fit(_as_input(Y, kind), _as_input(T, kind), X=Xi), name)
    if result == "ok":  # then what it says must be finite, or refused
        T0 = np.asarray(T, dtype=float)

        def effect() -> None:
            values = est.effect(X, T0=T0, T1=T0 + 1.0)
            assert values.shape == T0.shape and np.all(np.isfinite(values)), name

        result = outcome_of(effect, name)
        result = "fitted, effects " + ("finite" if result == "ok" else "refused")
    TALLY["arrays", name, result] += 1


# --------------------------------------------------------------------------------------------
# malformed configs

_KEYS = (
    "seed window alpha arctic ny nx days estimator name params training max_epochs scenario "
    "kind value covariates start chunks sources paths output overwrite datasets estimators "
    "seeds unknown"
).split()
_values = st.recursive(
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=8),
        st.sampled_from(["2020-03-01", "../x", "kgcm-vae", "cell", "scale"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300 if FULL else 80, deadline=None)
@given(
    data=st.dictionaries(st.sampled_from(_KEYS), _values, max_size=6),
    fmt=st.sampled_from(["toml", "yaml", "bytes"]),
    raw=st.binary(max_size=200),
    which=st.sampled_from(["demo", "fit", "prepare", "benchmark"]),
    overrides=st.lists(st.text(max_size=20), max_size=3),
)
def test_malformed_configs_never_crash(tmp_path_factory, data, fmt, raw, which, overrides):
    import tomli_w
    import yaml

    from kgcm.config import load_config
    from kgcm.experiments.benchmark import BenchmarkConfig
    from kgcm.experiments.demo import DemoConfig
    from kgcm.experiments.fit import FitConfig
    from kgcm.prepare import PrepareConfig

    cls = {"demo": DemoConfig, "fit": FitConfig, "prepare": PrepareConfig,
           "benchmark": BenchmarkConfig}[which]  # fmt: skip
    folder = tmp_path_factory.mktemp("cfg")
    if fmt == "toml":
        path = folder / "c.toml"
        try:
            path.write_text(tomli_w.dumps(_toml_safe(data)))
        except (TypeError, ValueError):
            path.write_bytes(raw)
    elif fmt == "yaml":
        path = folder / "c.yaml"
        path.write_text(yaml.safe_dump(data))
    else:
        path = folder / "c.toml"
        path.write_bytes(raw)
    result = outcome_of(lambda: load_config(cls, path, overrides), f"{which} config")
    TALLY["configs", f"{which} {fmt}", result] += 1


def _toml_safe(v):
    if isinstance(v, dict):
        return {str(k): _toml_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_toml_safe(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63:
        return float(v)
    return v


# --------------------------------------------------------------------------------------------
# damaged files, every reader

_SMALL = {
    "cmems-glorys12": {"ny": 6, "nx": 8, "days": 3, "days_per_file": 3},
    "cmems-topaz": {"ny": 8, "nx": 8},
    "oras5": {"ny": 8, "nx": 8, "months": 2},
    "nsidc-0116": {},
    "cs2smos": {"windows": 2},
    "piomas": {"months": 2},
}


def _damaged(data: bytes, rng: np.random.Generator, n_random: int) -> dict[str, bytes]:
    n = len(data)
    cases = {
        "empty": b"",
        "header only": data[:64],
        **{f"truncated {f:.0%}": data[: int(n * f)] for f in (0.1, 0.5, 0.9)},
        "last byte cut": data[:-1],
        "zeros": bytes(n),
    }
    for i in range(n_random):
        bad = bytearray(data)
        at = int(rng.integers(0, max(1, n - 64)))
        bad[at : at + 64] = rng.integers(0, 256, size=min(64, n - at), dtype=np.uint8).tobytes()
        cases[f"64 random bytes #{i}"] = bytes(bad)
    return cases


@pytest.mark.parametrize("product", sorted(_SMALL))
def test_damaged_files_per_reader(product, tmp_path) -> None:
    from kgcm.synthetic.products import write_product

    files = write_product(product, tmp_path / "good", **_SMALL[product])
    rng = np.random.default_rng(sum(map(ord, product)))
    data = files[0].read_bytes()
    for case, content in _damaged(data, rng, 24 if FULL else 4).items():
        bad = tmp_path / "bad" / case.replace(" ", "_").replace("%", "pc").replace("#", "")
        bad.mkdir(parents=True)
        path = bad / files[0].name
        path.write_bytes(content)
        others = [f for f in files[1:] if f.parent == files[0].parent]
        for how, kwargs in (("named", {"product": product}), ("detected", {})):

            def read(path=path, kwargs=kwargs, others=others):
                kgcm.open_dataset([path, *others], **kwargs).load()

            result = outcome_of(read, f"{product} {case} ({how})")
            TALLY["files", f"{product} ({how})", result] += 1
            if case in ("empty", "header only", "zeros") or "truncated" in case:
                assert result == "refused", f"{product}: {case} ({how}) was read as data"


# --------------------------------------------------------------------------------------------
# SIGKILL at random moments, then a rerun


def _cli(*args: str) -> list[str]:
    return [PY, "-m", "kgcm.cli", *args]


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)


def _kill_at(args: list[str], out: Path, after: float) -> int:
    """Start ``args``; SIGKILL it ``after`` seconds once it holds the output's lock (so the kill
    lands in the work, not in the imports). Returns -9, or the exit code if it ended first."""
    lock = out.parent / f".{out.name}.lock"
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not lock.exists() and proc.poll() is None:
        time.sleep(0.05)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return -9
    return proc.returncode


DEMO = ["--set", "arctic.ny=5", "--set", "arctic.nx=5", "--set", "arctic.days=60",
        "--set", "estimator.params.hidden=8", "--set", "estimator.params.n_draws=4",
        "--set", "estimator.params.training.max_epochs=2"]  # fmt: skip


def _same_demo(a: Path, b: Path) -> None:
    assert json.loads((a / "metrics.json").read_text()) == json.loads(
        (b / "metrics.json").read_text()
    )
    with xr.open_dataset(a / "effects.nc") as da, xr.open_dataset(b / "effects.nc") as db:
        xr.testing.assert_identical(da.load(), db.load())


def _kill_and_rerun(name, args_for, check_after_kill, same, n_kills, tmp_path) -> None:
    """Reference run; then ``n_kills`` times: SIGKILL a run on another output at a random
    moment (over a complete earlier output from the second kill on, or from the first when
    there is one kill), check what the kill left, rerun, and compare with the reference."""
    import shutil

    ref = tmp_path / "reference"
    lock = ref.parent / f".{ref.name}.lock"
    proc = subprocess.Popen(args_for(ref), env=ENV, stderr=subprocess.PIPE, text=True)
    while not lock.exists() and proc.poll() is None:
        time.sleep(0.05)
    started = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    duration = time.perf_counter() - started  # the work, from taking the lock to the end
    rng = np.random.default_rng(len(name))
    out = tmp_path / "killed"
    for i in range(n_kills):
        if i == min(1, n_kills - 1) and not out.exists():  # a rerun over a complete output
            shutil.copytree(ref, out)
        at = float(rng.uniform(0.1, 0.9) * duration)
        code = _kill_at(args_for(out), out, at)
        state = check_after_kill(out)
        how = "SIGKILL" if code == -9 else "had finished"
        TALLY["kill", name, f"at {at / duration:.0%} of a run ({how}): {state}"] += 1
        assert code in (0, -9)
        rerun = _run(args_for(out))
        assert rerun.returncode == 0, rerun.stderr
        same(ref, out)
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"{name}: left {leftovers}"
        TALLY["kill", name, "rerun complete and identical"] += 1


def _folder_state(kind):
    def check(out: Path) -> str:
        if not out.exists():
            return "absent"
        assert verify_folder(out, kind) is not None, f"{out} has no manifest"
        return "complete"

    return check


@pytest.mark.slow  # the same transaction as fit's (tested in the default suite), costlier
@pytest.mark.skipif(not FULL, reason="KGCM_FULL=1: fit's kill test covers the same transaction")
@pytest.mark.parametrize("kills", KILLS)
def test_demo_killed_then_rerun(tmp_path, kills) -> None:
    _kill_and_rerun(
        "demo",
        lambda out: _cli("demo", "--out", str(out), *DEMO),
        _folder_state("demo"),
        _same_demo,
        kills,
        tmp_path,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from kgcm.synthetic.products import write_product

    root = tmp_path_factory.mktemp("faults-prepare")
    write_product("cmems-glorys12", root / "p", ny=12, nx=16, days=60, days_per_file=10)
    (root / "prepare.toml").write_text(
        'output = "store.zarr"\n[[sources]]\nname = "g"\npaths = "p/*.nc"\n'
        'product = "cmems-glorys12"\n[chunks]\ntime = 8\ny = 6\nx = 8\n'
    )
    done = _run(_cli("prepare", "--config", str(root / "prepare.toml"), "--no-progress"))
    assert done.returncode == 0, done.stderr
    return root


def _same_store(a: Path, b: Path) -> None:
    with xr.open_zarr(a) as da, xr.open_zarr(b) as db:
        for name in da.data_vars:
            np.testing.assert_array_equal(da[name].values, db[name].values)


@pytest.mark.parametrize("kills", KILLS)
def test_prepare_killed_then_rerun(store, tmp_path, kills) -> None:
    def args(out: Path) -> list[str]:
        return _cli("prepare", "--config", str(store / "prepare.toml"), "--out", str(out),
                    "--overwrite", "--no-progress")  # fmt: skip

    def check(out: Path) -> str:
        if not out.exists():
            return "absent"
        from kgcm.prepare import open_prepared

        open_prepared(out)
        return "complete"

    _kill_and_rerun("prepare", args, check, _same_store, kills, tmp_path)


def _fit_config(store: Path, tmp_path: Path) -> Path:
    cfg = tmp_path / "fit.toml"
    cfg.write_text(
        f'data = "{store / "store.zarr"}"\ncovariates = []\nwindow = 10\n'
        '[estimator]\nname = "crn"\n[estimator.params]\nhidden = 4\nrep_dim = 2\n'
        "[estimator.params.training]\nmax_epochs = 2\nprogress = false\n"
    )
    return cfg


@pytest.mark.parametrize("kills", KILLS)
def test_fit_killed_then_rerun(store, tmp_path, kills) -> None:
    cfg = _fit_config(store, tmp_path)

    def same(a: Path, b: Path) -> None:
        ma = json.loads((a / "metrics.json").read_text())
        mb = json.loads((b / "metrics.json").read_text())
        ma.pop("fit_seconds"), mb.pop("fit_seconds")
        assert ma == mb
        assert (a / "split.npz").read_bytes() == (b / "split.npz").read_bytes()

    _kill_and_rerun(
        "fit",
        lambda out: _cli("fit", "--config", str(cfg), "--out", str(out), "--allow-weak-overlap"),
        _folder_state("fit"),
        same,
        kills,
        tmp_path,
    )


# --------------------------------------------------------------------------------------------
# two runs on one output at once


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="KGCM_FULL=1: two fits on one output cover the same lock")
def test_two_demos_on_one_output(tmp_path) -> None:
    _two_runs(lambda out: _cli("demo", "--out", str(out), *DEMO), "demo", tmp_path)


def test_two_fits_on_one_output(store, tmp_path) -> None:
    cfg = _fit_config(store, tmp_path)
    _two_runs(
        lambda out: _cli("fit", "--config", str(cfg), "--out", str(out), "--allow-weak-overlap"),
        "fit",
        tmp_path,
    )


def _two_runs(args_for, kind: str, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            args_for(out),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    for code, err in results:
        assert code == 0 or (code == 2 and "in use by another kgcm run" in err), err
    assert codes[0] == 0
    verify_folder(out, kind)
    TALLY["concurrent", f"{kind} x2", "exit codes " + " and ".join(map(str, codes))] += 1


# --------------------------------------------------------------------------------------------
# a killed benchmark takes its workers with it


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_benchmark_leaves_no_workers(tmp_path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        'seeds = [0, 1, 2, 3]\nn_jobs = 2\nreference = "kgcm-vae"\n[[datasets]]\nname = "a"\n'
        'kind = "arctic"\nparams = {ny = 6, nx = 6, days = 120}\n[[estimators]]\n'
        'name = "kgcm-vae"\nparams = {training = {max_epochs = 500, patience = 500}}\n'
    )
    args = _cli("benchmark", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-progress")
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(1.0)
        workers = [
            k
            for k in _children(proc.pid)
            if b"popen_loky" in Path(f"/proc/{k}/cmdline").read_bytes()
        ]
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(5.0)  # let them pick up cells
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    # a worker notices within a second once it runs a cell; one still importing kgcm and torch
    # notices when it gets there
    while time.monotonic() - killed < 60 and any(_running(w) for w in workers):
        time.sleep(0.5)
    waited = time.monotonic() - killed
    alive = [w for w in workers if _running(w)]
    for w in alive:  # clean up before failing
        with contextlib.suppress(ProcessLookupError):
            os.kill(w, signal.SIGKILL)
    TALLY[
        "kill", "benchmark workers", f"all gone {waited:.0f} s after" if not alive else "left"
    ] += 1
    assert not alive, f"workers {alive} still ran 60 s after the benchmark was killed"
