"""Typed, frozen run configs, loaded from TOML or YAML and overridable from the CLI.

This module is generic: it loads, checks, overrides and writes any config dataclass. Each job
declares its own config next to its code (``kgcm.experiments.demo.DemoConfig``,
``kgcm.experiments.fit.FitConfig``, ...); the parts they share live with what they describe
(:class:`EstimatorConfig` here, the scenario and the treatment in :mod:`kgcm.treatments`).

Unknown keys are refused with the valid ones and a did-you-mean; values are checked against the
field types; the resolved config is written next to every result (:func:`dump_toml`), so a
run is reproducible from its output folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kgcm.errors import ConfigError, did_you_mean

__all__ = [
    "EstimatorConfig",
    "apply_overrides",
    "check_estimator_params",
    "dump_toml",
    "from_dict",
    "load_config",
    "to_dict",
]

C = TypeVar("C")


def check_estimator_params(params: Mapping[str, Any], where: str) -> None:
    """Refuse a ``seed`` among an estimator's parameters.

    A run has one seed (its ``seed`` setting, or the benchmark's ``seeds``) and it seeds the
    estimator; a second one inside the estimator's parameters would either silently win over the
    run's or clash with it, so it is refused here, once, for every kind of run.
    """
    if "seed" in params:
        raise ConfigError(
            f"{where} sets seed = {params['seed']!r}; the run's seed sets the estimator's seed. "
            f"Remove seed from {where} and set the run's seed instead (seed = ... in a demo or "
            f"fit config, seeds = [...] in a benchmark or ablation config, or --set seed=...)."
        )


@dataclass(frozen=True)
class EstimatorConfig:
    """Which estimator, with which parameters (``kgcm.make_estimator(name, **params)``).

    ``params`` hold everything but the seed: the run's seed seeds the estimator, and a ``seed``
    here is refused (:func:`check_estimator_params`).
    """

    name: str = "kgcm-vae"
    params: dict[str, Any] = field(default_factory=dict)
    #: the interval strategy (kgcm.inference): {} is the estimator's own ("model");
    #: {method = "bootstrap", n_bootstrap = 10, block = 4} refits on spatial blocks of cells;
    #: {method = "parametric", ...} refits on outcomes simulated from the fit
    inference: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from kgcm.inference import Inference

        check_estimator_params(self.params, "estimator.params")
        Inference.coerce(self.inference or None)  # a bad setting fails when the config is read


# --------------------------------------------------------------------------------------------
# dict <-> dataclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table of settings; got {value!r}.")
        return from_dict(tp, value, where=where)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {[_type_name(a) for a in args]}.")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be a list; got {value!r}.")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table; got {value!r}.")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is not Any:  # e.g. chunks: dict[str, int]
            return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false; got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer; got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number; got {value!r}.")
        return float(value)
    if tp is str:
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()  # TOML and YAML read 2020-03-01 as a date; kgcm keeps text
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string; got {value!r}.")
        return value
    return value


def from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
    """Build a config dataclass from a mapping; unknown keys and bad types are refused."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(
                f"unknown config key {path!r}; valid keys here: {names}."
                f"{did_you_mean(str(key), names)}"
            )
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain types (tuples become lists), ready for TOML or JSON."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(config)


# --------------------------------------------------------------------------------------------
# files and overrides


#: config files are small; a bigger one is a mistake (or an attack on the parser)
MAX_CONFIG_BYTES = 1 << 20


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict.

    The file must be a regular UTF-8 file of at most 1 MiB. Duplicate keys are refused in both
    formats (TOML refuses them itself); YAML anchors and aliases are refused before anything is
    built, so a small file cannot expand into a huge one.
    """
    p = Path(path)
    where = os.fspath(p)
    if not p.exists():
        raise ConfigError(f"config file {where!r} does not exist.")
    if not p.is_file():
        raise ConfigError(f"config {where!r} is not a regular file (a folder, pipe or device).")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config {where!r} must end in .toml, .yaml or .yml.")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config {where!r} is {size:,} bytes; a kgcm config is at most "
            f"{MAX_CONFIG_BYTES:,} (1 MiB). Is this the right file?"
        )
    try:
        text = p.read_bytes()[: MAX_CONFIG_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {where!r} is not UTF-8 text (byte {exc.start}); give a TOML or YAML file."
        ) from exc
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"could not parse {where!r}: {exc}") from exc
    import yaml

    try:
        data = yaml.load(text, Loader=_strict_yaml_loader()) or {}  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"could not parse {where!r}: {exc}") from exc
    except _YamlRefused as exc:
        raise ConfigError(f"could not use {where!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where!r} must hold a mapping at the top level.")
    return data


class _YamlRefused(Exception):
    pass


def _strict_yaml_loader() -> type:
    """A SafeLoader that refuses anchors/aliases and duplicate keys."""
    import yaml

    class Strict(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise _YamlRefused(
                    f"line {line}: YAML anchors and aliases (&name, *name) are not allowed in "
                    f"kgcm configs; write the values out."
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise _YamlRefused(
                        f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one "
                        f"table; keep one (YAML would silently take the last)."
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Strict


def _parse_value(text: str) -> Any:
    """A CLI override value, read as TOML (numbers, booleans, lists, quoted strings); a bare
    word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _field_type(cls: Any, parts: Sequence[str]) -> Any:
    """The declared type of the config field at ``parts`` (None below a free-form table)."""
    tp = cls
    for part in parts:
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
    return tp


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], schema: Any = None
) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (returns a new dict).

    Values are read as TOML (numbers, booleans, lists, dates, quoted strings). With ``schema``
    (the config class) a field declared as text takes the value as written, so
    ``--set start=2020-03-01`` or ``--set name=2024`` give the strings the config expects.
    """
    out = to_dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value.")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table.")
        value = _parse_value(raw.strip())
        if schema is not None and _field_type(schema, parts) is str and not isinstance(value, str):
            value = raw.strip()
        node[parts[-1]] = value
    return out


def load_config(
    cls: type[C], path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> C:
    """Defaults, updated by a file, updated by ``key=value`` overrides; then validated."""
    data = to_dict(cls()) if path is None else read_mapping(path)
    data = apply_overrides(data, overrides, schema=cls)
    return from_dict(cls, data)


def dump_toml(config: Any) -> str:
    """The resolved config as TOML text (None values left out: TOML has no null)."""
    import tomli_w

    def drop_none(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop_none(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_none(x) for x in v]
        return v

    return tomli_w.dumps(drop_none(to_dict(config)))
