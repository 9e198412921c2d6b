"""Nothing lost, nothing mixed, nothing silent: outputs, inputs and model files.

Each test pins one case of a hostile use: the output transaction (lock, marker, staging),
the input boundaries (configs, CLI values, readers, estimator inputs) and model checksums.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import kgcm
from kgcm._io import (
    MARKER,
    OutputLock,
    check_name,
    output_folder,
    verify_folder,
)
from kgcm.cli import app
from kgcm.config import load_config, read_mapping
from kgcm.errors import ConfigError, DataError, InputError, OutputError
from kgcm.experiments.demo import DemoConfig

runner = CliRunner()
PY = sys.executable
SRC = str(Path(kgcm.__file__).resolve().parents[1])


# --------------------------------------------------------------------------------------------
# output folders


def _write_run(target: Path, text: str, kind: str = "demo") -> None:
    with output_folder(target, kind) as staging:
        (staging / "a.txt").write_text(text)
        (staging / "b.txt").write_text(text * 2)


def test_output_folder_replaces_only_its_own_kind(tmp_path) -> None:
    out = tmp_path / "run"
    _write_run(out, "one")
    assert json.loads((out / MARKER).read_text())["kind"] == "demo"
    _write_run(out, "two")
    assert (out / "a.txt").read_text() == "two"
    assert verify_folder(out, "demo") is not None
    with pytest.raises(OutputError, match="holds a kgcm 'demo' output, not a 'fit'"):
        _write_run(out, "three", kind="fit")
    assert (out / "a.txt").read_text() == "two"
    # nothing hidden is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_output_folder_never_replaces_foreign_things(tmp_path) -> None:
    notes = tmp_path / "mine"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="files kgcm did not write"):
        _write_run(notes, "x")
    assert (notes / "notes.txt").read_text() == "keep"
    plain = tmp_path / "file.txt"
    plain.write_text("keep")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        _write_run(plain, "x")
    assert plain.read_text() == "keep"
    link = tmp_path / "link"
    link.symlink_to(notes)
    with pytest.raises(OutputError, match="symbolic link"):
        _write_run(link, "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_run(empty, "ok")  # an empty folder is fine
    assert (empty / "a.txt").read_text() == "ok"


def test_failed_run_leaves_the_old_output_whole(tmp_path) -> None:
    out = tmp_path / "run"
    _write_run(out, "old")
    with pytest.raises(RuntimeError), output_folder(out, "demo") as staging:
        (staging / "a.txt").write_text("new")
        raise RuntimeError("the fit failed")
    assert (out / "a.txt").read_text() == "old"
    assert verify_folder(out, "demo") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_manifest_catches_a_changed_file(tmp_path) -> None:
    out = tmp_path / "run"
    _write_run(out, "one")
    (out / "b.txt").write_text("edited")
    with pytest.raises(DataError, match=r"b.txt.*differs from the file"):
        verify_folder(out, "demo")


def test_a_second_run_on_one_output_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [PY, "-c", f"import sys, time; sys.path.insert(0, {SRC!r}); from kgcm._io import "
         f"OutputLock; lock = OutputLock({str(out)!r}).acquire(); print('held', flush=True); "
         f"time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"in use by another kgcm run.*pid.*{holder.pid}"):
            _write_run(out, "x")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and taken over
    _write_run(out, "after")
    assert (out / "a.txt").read_text() == "after"


def test_lock_is_reentrant_across_sequential_runs(tmp_path) -> None:
    for _ in range(3):
        with OutputLock(tmp_path / "x"):
            pass
    assert not (tmp_path / ".x.lock").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "a..b", "x" * 101, "sp ace"])
def test_names_from_configs_must_be_plain(name) -> None:
    with pytest.raises(ConfigError, match="cannot be used as a folder name"):
        check_name(name, "estimator label")


def test_benchmark_labels_and_dataset_names_checked() -> None:
    from kgcm.experiments.benchmark import DatasetSpec, EstimatorSpec

    with pytest.raises(ConfigError, match=r"estimator label '../evil'"):
        EstimatorSpec(name="zero-effect", label="../evil")
    with pytest.raises(ConfigError, match="dataset name 'a/b'"):
        DatasetSpec(name="a/b", kind="arctic")
    EstimatorSpec(name="kgcm-vae", label="mmd+no-adj+transition")


def test_benchmark_typos_are_errors(tmp_path) -> None:
    from kgcm.config import from_dict
    from kgcm.experiments.benchmark import BenchmarkConfig, run_benchmark

    def cfg(**change):
        data = {
            "datasets": [{"name": "a", "kind": "arctic", "params": {"ny": 4, "nx": 4}}],
            "estimators": [{"name": "zero-effect"}],
            "reference": "zero-effect",
            "seeds": [0],
            "n_jobs": 1,
        }
        data.update(change)
        return from_dict(BenchmarkConfig, data)

    with pytest.raises(ConfigError, match=r"estimator 'crn'.*no parameter 'hiden'"):
        run_benchmark(
            cfg(estimators=[{"name": "crn", "params": {"hiden": 3}}], reference="crn"),
            out=tmp_path / "b",
            log=lambda m: None,
            progress=False,
        )
    with pytest.raises(ConfigError, match=r"unknown config key 'datasets\.a\.params\.nyy'"):
        bad = [{"name": "a", "kind": "arctic", "params": {"nyy": 4}}]
        run_benchmark(cfg(datasets=bad), out=tmp_path / "b", log=lambda m: None, progress=False)
    with pytest.raises(ConfigError, match="reference 'kgcm-vae' is not an estimator label"):
        run_benchmark(
            cfg(reference="kgcm-vae"), out=tmp_path / "b", log=lambda m: None, progress=False
        )
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------------------------
# the CLI: every unwritable --out is a clear error


TINY = ["--set", "arctic.ny=4", "--set", "arctic.nx=4", "--set", "arctic.days=60",
        "--set", "estimator.params.training.max_epochs=1"]  # fmt: skip


def _cli(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_unwritable_outputs_are_clear_errors(tmp_path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        cases = {
            "demo file": ["demo", "--out", str(plain), *TINY],
            "demo under a file": ["demo", "--out", str(plain / "d"), *TINY],
            "simulate file": ["simulate", str(plain), *TINY],
            "simulate under a file": ["simulate", str(plain / "s.nc"), *TINY],
        }
        if os.geteuid() != 0:  # permissions do not stop root
            cases["demo read-only"] = ["demo", "--out", str(locked / "d"), *TINY]
            cases["simulate read-only"] = ["simulate", str(locked / "s.nc"), *TINY]
        for what, args in cases.items():
            code, output = _cli(args)
            assert code == 2, (what, output)
            assert "error:" in output and "Traceback" not in output, (what, output)
            assert re.search(r"not a folder|not writable|not written by|is a file", output), (
                what,
                output,
            )
    finally:
        locked.chmod(0o700)
    assert plain.read_text() == "keep"


def test_unwritable_outputs_of_prepare_fit_benchmark(tmp_path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep")
    prep = _write(
        tmp_path / "p.toml", 'overwrite = true\n[[sources]]\nname = "a"\npaths = "x.nc"\n'
    )
    fit = _write(tmp_path / "f.toml", 'data = "store.zarr"\n')
    bench = _write(
        tmp_path / "b.toml",
        'reference = "zero-effect"\nseeds = [0]\n[[datasets]]\nname = "a"\nkind = "arctic"\n'
        '[[estimators]]\nname = "zero-effect"\n',
    )
    for out in (plain, notes, plain / "sub"):
        for args in (
            ["prepare", "--config", str(prep), "--out", str(out), "--no-progress"],
            ["fit", "--config", str(fit), "--out", str(out)],
            ["benchmark", "--config", str(bench), "--out", str(out), "--no-progress"],
        ):
            code, output = _cli(args)
            assert code == 2, (args, output)
            assert re.search(r"not a folder|did not write|is a file", output), (args, output)
    assert plain.read_text() == "keep" and (notes / "notes.txt").read_text() == "keep"


def test_effect_alpha_out_of_range(tmp_path) -> None:
    code, output = _cli(["effect", str(tmp_path), "--alpha", "2"])
    assert code == 2 and "alpha must be a number in (0, 1)" in output


# --------------------------------------------------------------------------------------------
# configs


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_alias_bomb_is_refused_at_once(tmp_path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    bomb = _write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(DemoConfig, bomb)


def test_duplicate_keys_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'seed' appears twice"):
        read_mapping(_write(tmp_path / "d.yaml", "seed: 1\nseed: 2\n"))
    with pytest.raises(ConfigError, match="could not parse"):
        read_mapping(_write(tmp_path / "d.toml", "seed = 1\nseed = 2\n"))


def test_binary_huge_and_special_configs(tmp_path) -> None:
    binary = tmp_path / "b.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_mapping(binary)
    huge = tmp_path / "h.toml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="at most 1,048,576"):
        read_mapping(huge)
    fifo = tmp_path / "f.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_mapping(fifo)


def test_set_values_are_typed_by_the_schema() -> None:
    from kgcm.config import apply_overrides, from_dict
    from kgcm.prepare import PrepareConfig

    data = {"sources": [{"name": "a", "paths": "x.nc"}]}
    cfg = from_dict(
        PrepareConfig,
        apply_overrides(data, ["start=2020-03-01", "end=2020-03-31"], schema=PrepareConfig),
    )
    assert (cfg.start, cfg.end) == ("2020-03-01", "2020-03-31")
    for bad, match in [
        ("start=garbage", "start must be a date"),
        ("chunks.time=big", "chunks.time must be an integer"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_dict(PrepareConfig, apply_overrides(data, [bad], schema=PrepareConfig))


# --------------------------------------------------------------------------------------------
# readers


def test_reader_refuses_a_fifo_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "x.nc"
    os.mkfifo(fifo)
    # in a subprocess with a time limit: a regression would block forever
    code = (
        f"import sys; sys.path.insert(0, {SRC!r}); import kgcm\n"
        f"try:\n    kgcm.open_dataset({str(fifo)!r})\n"
        f"except kgcm.errors.DataError as e:\n    print('refused:', e)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused:" in out.stdout and "not a regular file" in out.stdout, out.stderr


def test_glorys_without_coordinates_is_refused(tmp_path) -> None:
    from kgcm.synthetic.products import write_product

    (path,) = write_product("cmems-glorys12", tmp_path / "g", ny=4, nx=5, days=3, days_per_file=3)
    ds = xr.load_dataset(path)
    ds.drop_vars(["latitude", "longitude"]).to_netcdf(tmp_path / "nocoords.nc")
    with pytest.raises(DataError, match=r"coordinate variables \['latitude', 'longitude'\]"):
        kgcm.open_dataset(tmp_path / "nocoords.nc", product="cmems-glorys12")


def test_truncated_file_is_named_as_damaged(tmp_path) -> None:
    from kgcm.synthetic.products import write_product

    (path,) = write_product("cmems-glorys12", tmp_path / "g", ny=4, nx=5, days=3, days_per_file=3)
    cut = tmp_path / "cut.nc"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(DataError, match="damaged or truncated"):
        kgcm.open_dataset(cut)
    with pytest.raises(DataError, match="not a date"):
        kgcm.open_dataset(path, time=("notadate", None))


# --------------------------------------------------------------------------------------------
# estimators


def _panel(n: int = 12, t: int = 6, p: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, p))
    T = rng.normal(size=(n, t))
    Y = X[..., 0] + 0.5 * T + 0.1 * rng.normal(size=(n, t))
    return Y, T, X


@pytest.mark.parametrize("name", kgcm.list_estimators())
def test_bad_seed_refused_at_construction(name) -> None:
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        kgcm.make_estimator(name, seed="zero")


@pytest.mark.parametrize("value", ["2", 2.5, True])
def test_bad_max_epochs_refused(value) -> None:
    with pytest.raises(ConfigError, match=r"training.max_epochs must be an integer"):
        kgcm.make_estimator("crn", training={"max_epochs": value})


def test_alpha_checked_in_effect_with_interval() -> None:
    Y, T, X = _panel()
    est = kgcm.make_estimator("linear-dml").fit(Y, T, X=X)
    with pytest.raises(InputError, match=r"alpha must be a number in \(0, 1\)"):
        est.effect_with_interval(X, T0=T, T1=T + 1, alpha=5)


def test_xarray_inputs_are_read_by_dimension_name() -> None:
    Y, T, X = _panel()
    est = kgcm.make_estimator("linear-dml").fit(Y, T, X=X)
    swapped = xr.DataArray(T.T, dims=("time", "unit"))
    Xs = xr.DataArray(X.transpose(2, 1, 0), dims=("feature", "step", "unit"))
    np.testing.assert_allclose(est.predict(Xs, swapped), est.predict(X, T))
    with pytest.raises(InputError, match="by dimension name"):
        est.predict(X, xr.DataArray(T, dims=("a", "b")))


def test_huge_outcomes_are_refused_not_nan() -> None:
    Y, T, X = _panel()
    for name in ("zero-effect", "linear-dml"):
        with pytest.raises(InputError, match=r"beyond what the models compute"):
            kgcm.make_estimator(name).fit(Y * 1e300, T, X=X)


def test_non_finite_results_name_the_cause() -> None:
    Y, T, X = _panel()
    est = kgcm.make_estimator("linear-dml").fit(Y, T, X=X)
    est._predict = lambda X, T: np.full(T.shape, np.nan)  # as after a diverged fit
    with pytest.raises(InputError, match=r"NaN or infinite.*scale of Y.*learning rate"):
        est.predict(X, T)
    nan = np.full(T.shape, np.nan)
    est._effect_se = lambda X, T0, T1: (nan, nan)
    with pytest.raises(InputError, match=r"effects are NaN or infinite"):
        est.effect(X, T0=T, T1=T + 1)
    with pytest.raises(InputError, match=r"effect standard errors are NaN or infinite"):
        est.effect_interval(X, T0=T, T1=T + 1)


def test_gst_unet_constant_treatment_and_no_covariates() -> None:
    Y, T, _ = _panel(n=16)
    fast = {"training": {"max_epochs": 1, "progress": False}, "width": 4}
    with pytest.raises(InputError, match="treatment T is constant"):
        kgcm.make_estimator("gst-unet", **fast).fit(Y, np.ones_like(T))
    est = kgcm.make_estimator("gst-unet", **fast).fit(Y, T)  # X optional, as its tags say
    assert est.effect(None, T0=T, T1=2 * T).shape == T.shape


def test_damaged_model_file_is_refused(tmp_path) -> None:
    Y, T, X = _panel()
    path = tmp_path / "m.kgcm"
    kgcm.make_estimator("crn", hidden=4, rep_dim=2, training={"max_epochs": 1}).fit(Y, T, X=X).save(
        path
    )
    good = path.read_bytes()
    expected = kgcm.load(path).predict(X, T)
    rng = np.random.default_rng(0)
    refused = 0
    for offset in rng.integers(0, len(good) - 64, size=12):
        bad = bytearray(good)
        bad[offset : offset + 64] = rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(bad))
        try:
            loaded = kgcm.load(path)
        except InputError as exc:
            assert "m.kgcm" in str(exc)
            refused += 1
            continue
        # bytes the reader never uses (a zip entry's local name and alignment padding, which
        # the central directory repeats) may be hit: then the model must load exactly intact
        np.testing.assert_array_equal(loaded.predict(X, T), expected)
    assert refused >= 10
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"m\.kgcm"):
        kgcm.load(path)


# --------------------------------------------------------------------------------------------
# kgcm effect on a fit run: checked inputs, transactional outputs


def test_effect_checks_the_run_and_writes_whole_sets(tmp_path) -> None:
    from kgcm.config import from_dict
    from kgcm.experiments.fit import FitConfig, run_effect, run_fit
    from kgcm.prepare import PrepareConfig, run_prepare
    from kgcm.synthetic.products import write_product

    write_product("cmems-glorys12", tmp_path / "p", ny=6, nx=8, days=40, days_per_file=40)
    prep = {"output": str(tmp_path / "s.zarr"), "sources": [{"name": "g", "paths": "p/*.nc"}]}
    run_prepare(from_dict(PrepareConfig, prep), base_dir=tmp_path, log=lambda m: None,
                progress=False)  # fmt: skip
    fit = {"data": str(tmp_path / "s.zarr"), "covariates": [], "window": 10,
           "estimator": {"name": "zero-effect", "params": {}}}  # fmt: skip
    run = tmp_path / "run"
    run_fit(from_dict(FitConfig, fit), run, log=lambda m: None, allow_weak_overlap=True)
    summary = run_effect(run, log=lambda m: None, allow_weak_overlap=True)
    assert summary["effects_file"] == str(run / "effects.nc")
    marker = verify_folder(run, "fit")  # the effect files joined the manifest
    assert {"effects.nc", "effects.json", "model.kgcm"} <= set(marker["files"])
    # elsewhere: a set whose summary lists the files beside it
    other = tmp_path / "elsewhere" / "e.nc"
    for _ in range(2):
        summary = run_effect(run, out=other, log=lambda m: None, allow_weak_overlap=True)
    listed = json.loads(other.with_suffix(".json").read_text())["files"]
    assert "e.nc" in listed and not [p for p in other.parent.iterdir() if p.name.startswith(".")]
    foreign = tmp_path / "foreign.nc"
    foreign.write_text("not mine")
    with pytest.raises(OutputError, match="not a kgcm effects file"):
        run_effect(run, out=foreign, log=lambda m: None)
    assert foreign.read_text() == "not mine"
    # a damaged run is refused, naming the file
    with open(run / "model.kgcm", "r+b") as f:
        f.seek(200)
        f.write(b"\0" * 16)
    with pytest.raises(DataError, match=r"model\.kgcm.*differs from the file"):
        run_effect(run, log=lambda m: None)


def test_prepare_resume_restarts_when_inputs_change(tmp_path, monkeypatch) -> None:
    """A prepare stopped part-way, its source files replaced (same names), then rerun: the store
    holds the new inputs only, as a fresh prepare of them does."""
    import kgcm.prepare as prepare
    from kgcm.config import from_dict
    from kgcm.prepare import PrepareConfig, run_prepare
    from kgcm.synthetic.products import write_product

    write_product("cmems-glorys12", tmp_path / "p", ny=6, nx=8, days=32, days_per_file=32)
    cfg = {"output": str(tmp_path / "s.zarr"), "sources": [{"name": "g", "paths": "p/*.nc"}],
           "chunks": {"time": 8}}  # fmt: skip
    monkeypatch.setattr(prepare, "_BLOCK_BYTES", 1)  # one time chunk per block: 4 blocks
    saved = prepare._save_state
    calls = []

    def stop_after_first_block(path, key, done):
        saved(path, key, done)
        calls.append(done)
        if len(done) == 1:
            raise KeyboardInterrupt  # as if killed after the first block

    monkeypatch.setattr(prepare, "_save_state", stop_after_first_block)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(from_dict(PrepareConfig, cfg), base_dir=tmp_path, log=lambda m: None,
                    progress=False)  # fmt: skip
    assert (tmp_path / ".s.zarr.partial").is_dir()
    monkeypatch.setattr(prepare, "_save_state", saved)
    write_product("cmems-glorys12", tmp_path / "p", ny=6, nx=8, days=32, days_per_file=32,
                  flow="rigid")  # fmt: skip
    run_prepare(from_dict(PrepareConfig, cfg), base_dir=tmp_path, log=lambda m: None,
                progress=False)  # fmt: skip
    fresh = {**cfg, "output": str(tmp_path / "fresh.zarr")}
    run_prepare(from_dict(PrepareConfig, fresh), base_dir=tmp_path, log=lambda m: None,
                progress=False)  # fmt: skip
    with xr.open_zarr(tmp_path / "s.zarr") as a, xr.open_zarr(tmp_path / "fresh.zarr") as b:
        for name in ("uo", "sithick"):
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_prepare_killed_while_removing_the_old_store(tmp_path, monkeypatch) -> None:
    """Found by the fault suite: a prepare killed while deleting the store it replaced left that
    half-deleted store under the name a rerun resumes from, and the rerun moved it into place."""
    import kgcm._io as io
    from kgcm.config import from_dict
    from kgcm.prepare import PrepareConfig, open_prepared, run_prepare
    from kgcm.synthetic.products import write_product

    write_product("cmems-glorys12", tmp_path / "p", ny=6, nx=8, days=16, days_per_file=16)
    cfg = from_dict(
        PrepareConfig,
        {"output": "s.zarr", "overwrite": True, "sources": [{"name": "g", "paths": "p/*.nc"}]},
    )
    run = lambda: run_prepare(cfg, base_dir=tmp_path, log=lambda m: None, progress=False)  # noqa: E731
    run()
    real = io.shutil.rmtree

    def killed_half_way(path, ignore_errors=False):
        if not (Path(path) / "manifest.json").is_file():  # not the replaced store
            return real(path, ignore_errors=ignore_errors)
        victim = next(p for p in Path(path).rglob("*") if p.is_file())
        victim.unlink()  # part of the old store is gone, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(io.shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(io.shutil, "rmtree", real)
    open_prepared(tmp_path / "s.zarr").load()  # the new store is in place
    run()
    open_prepared(tmp_path / "s.zarr").load()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
