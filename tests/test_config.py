"""Typed configs: files, overrides, unknown keys, round trips."""

from __future__ import annotations

import pytest

from kgcm.config import dump_toml, load_config
from kgcm.errors import ConfigError
from kgcm.experiments.demo import DemoConfig


def test_defaults_and_overrides() -> None:
    cfg = load_config(
        DemoConfig, None, ["arctic.ny=8", "estimator.params.hidden=12", "scenario.kind=shift"]
    )
    assert cfg.arctic.ny == 8 and cfg.arctic.nx == 24
    assert cfg.estimator.params == {"hidden": 12, "training": {"max_epochs": 40}}
    assert cfg.scenario.kind == "shift"


def test_toml_round_trip(tmp_path) -> None:
    cfg = load_config(DemoConfig, None, ["arctic.modulation.window=7", "covariates=['zos']"])
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(DemoConfig, path) == cfg


def test_yaml(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\narctic:\n  days: 120\n")
    cfg = load_config(DemoConfig, path)
    assert cfg.seed == 4 and cfg.arctic.days == 120


def test_shipped_demo_config_is_the_default() -> None:
    from pathlib import Path

    shipped = Path(__file__).parents[1] / "configs" / "demo.toml"
    assert load_config(DemoConfig, shipped) == DemoConfig()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "arctic.confunding=1",
            "unknown config key 'arctic.confunding'.*Did you mean 'confounding'",
        ),
        ("sead=1", "Did you mean 'seed'"),
        ("arctic.ny=ten", "arctic.ny must be an integer"),
        ("window=1", "window must be an integer >= 2"),
        ("scenario.kind=double", "scenario.kind must be 'scale' or 'shift'"),
        ("arctic", "must look like key.sub=value"),
        ("test_fraction=true", "test_fraction must be a number"),
    ],
)
def test_bad_configs_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(DemoConfig, None, [override])


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DemoConfig, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="could not parse"):
        load_config(DemoConfig, bad)
    other = tmp_path / "c.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match=r"must end in \.toml, \.yaml or \.yml"):
        load_config(DemoConfig, other)


# --------------------------------------------------------------------------------------------
# One seed per run: a seed inside an estimator's params is refused on every path, naming the fix

SEED_FIX = r"estimator\.params sets seed = 3; the run's seed sets the estimator's seed.*Remove seed"


def test_demo_refuses_an_estimator_seed_from_toml_and_overrides(tmp_path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text("seed = 1\n[estimator]\nname = 'kgcm-vae'\n[estimator.params]\nseed = 3\n")
    with pytest.raises(ConfigError, match=SEED_FIX):
        load_config(DemoConfig, path)
    with pytest.raises(ConfigError, match=SEED_FIX):
        load_config(DemoConfig, None, ["estimator.params.seed=3"])


def test_demo_refuses_an_estimator_seed_from_python() -> None:
    from kgcm.config import EstimatorConfig

    with pytest.raises(ConfigError, match=SEED_FIX):
        DemoConfig(estimator=EstimatorConfig(name="zero-effect", params={"seed": 3}))


def test_fit_refuses_an_estimator_seed(tmp_path) -> None:
    from kgcm.config import EstimatorConfig, from_dict
    from kgcm.experiments.fit import FitConfig

    path = tmp_path / "fit.toml"
    path.write_text("[estimator]\nname = 'zero-effect'\n[estimator.params]\nseed = 3\n")
    with pytest.raises(ConfigError, match=SEED_FIX):
        load_config(FitConfig, path)
    with pytest.raises(ConfigError, match=SEED_FIX):
        from_dict(FitConfig, {"estimator": {"name": "zero-effect", "params": {"seed": 3}}})
    with pytest.raises(ConfigError, match=SEED_FIX):
        FitConfig(estimator=EstimatorConfig(name="zero-effect", params={"seed": 3}))


def test_benchmark_and_ablation_refuse_an_estimator_seed(tmp_path) -> None:
    from kgcm.experiments import benchmark as bm

    path = tmp_path / "bench.toml"
    path.write_text(
        "seeds = [0]\n[[datasets]]\nname = 'a'\nkind = 'arctic'\n"
        "[[estimators]]\nname = 'zero-effect'\nlabel = 'z'\n[estimators.params]\nseed = 3\n"
    )
    fix = r"estimators\.z\.params sets seed = 3; the run's seed sets the estimator's seed"
    with pytest.raises(ConfigError, match=fix):
        load_config(bm.BenchmarkConfig, path)
    with pytest.raises(ConfigError, match=r"estimators\.t-learner\.params sets seed = 3"):
        bm.EstimatorSpec(name="t-learner", params={"seed": 3})
    with pytest.raises(ConfigError, match=r"^params sets seed = 3; the run's seed"):
        bm.AblateConfig(params={"seed": 3})
