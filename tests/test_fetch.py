"""`kgcm fetch`: the Copernicus Marine requests, the dry run, and clear errors; no network."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from kgcm.cli import app
from kgcm.errors import ConfigError, DataError
from kgcm.fetch import PRODUCTS, FetchRequest, build_requests, download

runner = CliRunner()

#: keyword parameters of copernicusmarine.subset in toolbox 2.x (the ones kgcm may send)
SUBSET_KEYWORDS = {
    "dataset_id", "dataset_version", "dataset_part", "variables", "minimum_longitude",
    "maximum_longitude", "minimum_latitude", "maximum_latitude", "minimum_depth",
    "maximum_depth", "start_datetime", "end_datetime", "output_filename", "output_directory",
    "overwrite", "skip_existing", "dry_run",
}  # fmt: skip

BRIEF = ["--product", "cmems-glorys12", "--variables", "sithick,zos,uo,vo",
         "--start", "2020-01-01", "--end", "2020-12-31", "--out", "data/"]  # fmt: skip


def test_glorys_request() -> None:
    (request,) = build_requests(
        "cmems-glorys12", ["sithick", "zos", "uo", "vo"], "2020-01-01", "2020-12-31", out="data"
    )
    assert request.to_kwargs() == {
        "dataset_id": "cmems_mod_glo_phy_my_0.083deg_P1D-m",
        "variables": ["sithick", "zos", "uo", "vo"],
        "minimum_longitude": -180.0,
        "maximum_longitude": 180.0,
        "minimum_latitude": 60.0,
        "maximum_latitude": 90.0,
        "start_datetime": "2020-01-01T00:00:00",
        "end_datetime": "2020-12-31T23:59:59",
        "minimum_depth": 0.0,
        "maximum_depth": 1.0,
        "output_directory": "data",
        "output_filename": "cmems-glorys12_sithick-zos-uo-vo_20200101-20201231.nc",
    }
    assert set(request.to_kwargs()) <= SUBSET_KEYWORDS
    assert str(request.path) == "data/cmems-glorys12_sithick-zos-uo-vo_20200101-20201231.nc"


def test_topaz_aliases_and_no_depth_for_surface_fields() -> None:
    (request,) = build_requests("cmems-topaz", "sithick,uo,vo,usi,vsi", "2000-01-01", "2000-01-31")
    assert request.variables == ("sithick", "vxo", "vyo", "vxsi", "vysi")
    assert request.dataset_id == "cmems_mod_arc_phy_my_topaz4_P1D-m"
    (surface,) = build_requests("cmems-topaz", "sithick,zos", "2000-01-01", "2000-01-31")
    assert "minimum_depth" not in surface.to_kwargs()
    (deep,) = build_requests(
        "cmems-glorys12", "uo,vo", "2000-01-01", "2000-01-02", depth=(0, 30), bbox=(70, 85, 0, 90)
    )
    kwargs = deep.to_kwargs()
    assert (kwargs["minimum_depth"], kwargs["maximum_depth"]) == (0.0, 30.0)
    assert (kwargs["minimum_latitude"], kwargs["maximum_longitude"]) == (70.0, 90.0)


def test_split_by_year_covers_every_day_once() -> None:
    requests = build_requests("cmems-glorys12", "zos", "2019-07-01", "2021-02-15", split="year")
    spans = [(r.start_datetime[:10], r.end_datetime[:10]) for r in requests]
    assert spans == [
        ("2019-07-01", "2019-12-31"),
        ("2020-01-01", "2020-12-31"),
        ("2021-01-01", "2021-02-15"),
    ]
    assert len({r.output_filename for r in requests}) == 3
    months = build_requests("cmems-glorys12", "zos", "2020-01-01", "2020-03-31", split="month")
    assert [r.end_datetime[:10] for r in months] == ["2020-01-31", "2020-02-29", "2020-03-31"]


def test_interim_dataset_and_skip_existing() -> None:
    (request,) = build_requests(
        "cmems-glorys12",
        "zos",
        "2023-01-01",
        "2023-01-31",
        dataset_id="cmems_mod_glo_phy_myint_0.083deg_P1D-m",
        skip_existing=True,
    )
    assert request.to_kwargs()["dataset_id"] == "cmems_mod_glo_phy_myint_0.083deg_P1D-m"
    assert request.to_kwargs()["skip_existing"] is True


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("cmems-glorys", "zos"), {}, r"unknown product 'cmems-glorys'.*'cmems-glorys12'"),
        (("cmems-glorys12", "sithik"), {}, r"has no variable 'sithik'.*Did you mean 'sithick'"),
        (("cmems-topaz", "uo,vx"), {}, r"has no variable 'vx'"),
        (("cmems-glorys12", "uo"), {}, r"'uo' without 'vo'.*request both"),
        (("cmems-topaz", "vyo"), {}, r"'vyo' without 'vxo'"),
        (("cmems-glorys12", ""), {}, r"no variables given"),
        (("cmems-glorys12", "zos"), {"dataset_id": "cmems_mod_glo_phy_my_0.083deg_P1M-m"},
         r"has no dataset .*Did you mean 'cmems_mod_glo_phy_my_0.083deg_P1D-m'"),
        (("cmems-glorys12", "zos"), {"split": "week"}, r"split must be 'none', 'year' or 'month'"),
        (("cmems-glorys12", "zos"), {"bbox": (90, 60, -180, 180)}, r"latitudes must satisfy"),
        (("cmems-glorys12", "uo,vo"), {"depth": (5, 1)}, r"depths must satisfy"),
    ],
)  # fmt: skip
def test_request_errors(args, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_requests(*args, "2020-01-01", "2020-01-31", **kwargs)


def test_date_errors() -> None:
    with pytest.raises(ConfigError, match=r"starts on 1993-01-01; start 1990-01-01 is earlier"):
        build_requests("cmems-glorys12", "zos", "1990-01-01", "1990-12-31")
    with pytest.raises(ConfigError, match=r"start 2020-02-01 is after end 2020-01-01; swap"):
        build_requests("cmems-glorys12", "zos", "2020-02-01", "2020-01-01")
    with pytest.raises(ConfigError, match=r"start '2020-13-01' is not a date; write YYYY-MM-DD"):
        build_requests("cmems-glorys12", "zos", "2020-13-01", "2020-12-31")


def test_products_are_consistent() -> None:
    for spec in PRODUCTS.values():
        assert spec.dataset_ids[0] == spec.dataset_id
        assert set(spec.aliases.values()) <= set(spec.variables)
        assert spec.depth_variables <= set(spec.variables)
        for a, b in spec.pairs:
            assert {a, b} <= set(spec.variables)


def test_request_is_frozen() -> None:
    (request,) = build_requests("cmems-glorys12", "zos", "2020-01-01", "2020-01-02")
    with pytest.raises(AttributeError):
        request.dataset_id = "x"  # type: ignore[misc]
    assert isinstance(request, FetchRequest)


# ---- the command line ------------------------------------------------------------------------


def test_cli_dry_run_prints_json_and_downloads_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "copernicusmarine", None)  # must not be needed
    result = runner.invoke(app, ["fetch", *BRIEF, "--dry-run"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["product"] == "cmems-glorys12"
    assert listing["product_id"] == "GLOBAL_MULTIYEAR_PHY_001_030"
    (request,) = listing["requests"]
    assert request["dataset_id"] == "cmems_mod_glo_phy_my_0.083deg_P1D-m"
    assert request["variables"] == ["sithick", "zos", "uo", "vo"]
    assert request["output_directory"] == "data"
    assert set(request) <= SUBSET_KEYWORDS
    assert not (tmp_path / "data").exists()


def test_cli_errors_are_clean(tmp_path) -> None:
    result = runner.invoke(
        app, ["fetch", "--product", "topaz", "--start", "2020-01-01", "--end", "2020-01-02"]
    )
    assert result.exit_code == 2
    assert "unknown product 'topaz'" in result.output
    result = runner.invoke(app, ["fetch", *BRIEF, "--bbox", "60,90", "--dry-run"])
    assert result.exit_code == 2
    assert "--bbox needs 4 comma-separated numbers; got '60,90'" in result.output


def test_missing_package_is_clear(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "copernicusmarine", None)  # import raises ImportError
    result = runner.invoke(app, ["fetch", *BRIEF[:-1], str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "pip install 'kgcm[fetch]'" in result.output
    assert "--dry-run" in result.output
    (request,) = build_requests("cmems-glorys12", "zos", "2020-01-01", "2020-01-02")
    with pytest.raises(ConfigError, match=r"pip install 'kgcm\[fetch\]'"):
        download([request])


def fake_toolbox(monkeypatch, *, fail: bool = False) -> list[dict]:
    calls: list[dict] = []
    module = types.ModuleType("copernicusmarine")

    def subset(**kwargs):  # type: ignore[no-untyped-def]
        if fail:
            raise RuntimeError("Invalid username or password")
        calls.append(kwargs)

    module.subset = subset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "copernicusmarine", module)
    return calls


def test_download_calls_subset_with_the_request(tmp_path, monkeypatch) -> None:
    calls = fake_toolbox(monkeypatch)
    requests = build_requests(
        "cmems-glorys12", "zos", "2020-01-01", "2021-12-31", out=tmp_path / "d", split="year"
    )
    written = download(requests)
    assert calls == [r.to_kwargs() for r in requests]
    assert written == [r.path for r in requests]
    assert (tmp_path / "d").is_dir()


def test_download_failure_explains_credentials(tmp_path, monkeypatch) -> None:
    fake_toolbox(monkeypatch, fail=True)
    (request,) = build_requests("cmems-glorys12", "zos", "2020-01-01", "2020-01-02", out=tmp_path)
    with pytest.raises(DataError, match=r"Invalid username or password.*copernicusmarine login"):
        download([request])


def test_cli_download_with_the_toolbox(tmp_path, monkeypatch) -> None:
    calls = fake_toolbox(monkeypatch)
    result = runner.invoke(app, ["fetch", *BRIEF[:-1], str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and "copernicusmarine login" in result.output
    assert "cmems-glorys12_sithick-zos-uo-vo_20200101-20201231.nc" in result.stdout
