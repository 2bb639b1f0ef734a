"""Typed configuration, shared by every CLI: nested dataclasses, YAML files and key=value overrides.

A config is a tree of dataclasses with defaults; each field is declared with `option()`, which
carries its help text and range. `load_config(path, overrides, cls)` reads an optional YAML file,
applies overrides such as `study.seeds=3` or `vae.hidden_dim=128` (values parsed as YAML), checks
every value's type and range, and then the config's own `check()` (constraints between keys).
Any mistake raises ConfigError with a one-line message that names the key and, for an unknown
key, suggests the closest valid one. `describe_options` is the --help table; `flat_values` the
{dotted key: value} view that resumed runs compare.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """YAML as PyYAML's safe loader reads it, except that floats follow YAML 1.2: PyYAML (YAML 1.1)
    reads 5.0e6 and 1e-3 as strings (its exponent needs a sign and its mantissa a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document `text` (YAML 1.2 floats); ConfigError naming `where`, the line and the column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{position}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {str(error).splitlines()[0]}") from None


class ConfigError(ValueError):
    """A bad config: unknown key, wrong type or value out of range (message names the key)."""


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    above: float | None = None,
) -> Any:
    """A dataclass field with a description and the constraints load_config checks.

    Lists and dicts take a default_factory; choices, at_least, at_most and above apply to each element of a list.
    """
    metadata = {"help": help, "choices": choices, "at_least": at_least, "at_most": at_most, "above": above}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --- reading and checking ---------------------------------------------------------------------


def check_device(key: str, name: str, allow_auto: bool = False) -> None:
    """ConfigError unless `name` is a device this machine has: cpu, cuda or cuda:N (N < the GPU
    count), or auto where allowed."""
    import torch  # here, not at the top: configs are read before anything else needs torch

    if allow_auto and name == "auto":
        return
    choices = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    if name == "cpu":
        return
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"{key}: {name!r} is not a device; choose {choices}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}: {name!r} asks for a GPU, but torch finds no CUDA device on this machine "
                          f"(torch {torch.__version__}); use cpu" + (" or auto" if allow_auto else ""))
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"{key}: {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _hints(cls: type) -> dict[str, Any]:
    """{field name: type hint} of a config dataclass (its ClassVars, e.g. packaged_configs, are not options)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def unused_reason(root: type, key: str) -> str | None:
    """Why the config class `root` does not use `key` (a key or a section it inherits; its ClassVar
    `unused_keys` maps them to a reason), or None for a key it uses."""
    for unused, reason in getattr(root, "unused_keys", {}).items():
        if key == unused or key.startswith(unused + "."):
            return reason
    return None


def all_keys(cls: type, prefix: str = "", root: type | None = None) -> list[str]:
    """Every dotted key of the config tree of dataclass `cls`, e.g. ['benchmark.name', ..., 'progress']
    (not those the class inherits without using them, see unused_reason)."""
    root = cls if root is None else root
    keys = []
    for name, hint in _hints(cls).items():
        key = f"{prefix}{name}"
        if unused_reason(root, key):
            continue
        if dataclasses.is_dataclass(hint):
            keys += all_keys(hint, f"{key}.", root)
        else:
            keys.append(key)
    return keys


def _unknown_key(key: str, cls: type) -> ConfigError:
    keys = all_keys(cls)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a misspelt leaf under a right section: compare leaves only
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, by_leaf, n=1, cutoff=0.6)]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (see --help)")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """value checked against the type hint (int, float, str, bool, list/tuple of them, X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if hint is Any:
        return value
    if hint is dict or origin is dict:  # free-form options (e.g. a supernet's constructor options)
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise bad


def _check_range(value: Any, metadata: typing.Mapping[str, Any], key: str) -> None:
    for element in value if isinstance(value, (list, tuple)) else [value]:
        if element is None:  # an optional value left unset: nothing to range-check
            continue
        choices = metadata.get("choices")
        if choices is not None and element not in choices:
            close = difflib.get_close_matches(str(element), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}: unknown value {element!r}{hint}; choose one of {', '.join(map(str, choices))}")
        if metadata.get("at_least") is not None and element < metadata["at_least"]:
            raise ConfigError(f"{key}: {element!r} is below the minimum {metadata['at_least']}")
        if metadata.get("at_most") is not None and element > metadata["at_most"]:
            raise ConfigError(f"{key}: {element!r} is above the maximum {metadata['at_most']}")
        if metadata.get("above") is not None and element <= metadata["above"]:
            raise ConfigError(f"{key}: {element!r} must be greater than {metadata['above']}")


def _section_shorthand(cls: type, value: Any) -> Any:
    """`data: digits` for `data: {name: digits}`: a scalar given for a section that has a `name` key."""
    if not isinstance(value, dict) and "name" in _hints(cls):
        return {"name": value}
    return value


def _build(defaults: Any, data: dict[str, Any], prefix: str = "", root: type | None = None) -> Any:
    """A copy of the dataclass instance `defaults` with the values of the nested dict `data`;
    unknown keys and bad values raise ConfigError (suggestions drawn from the keys of `root`)."""
    root = type(defaults) if root is None else root
    data = _section_shorthand(type(defaults), data) if prefix else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    cls = type(defaults)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise _unknown_key(f"{prefix}{name}", root)
        if reason := unused_reason(root, f"{prefix}{name}"):
            raise ConfigError(f"{prefix}{name}: {reason}")
    values = {}
    for name, value in data.items():
        key, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(getattr(defaults, name), value, f"{key}.", root)
        else:
            values[name] = _coerce(value, hint, key)
            if isinstance(values[name], dict):  # sub-keys of a free-form option add to its defaults
                values[name] = {**getattr(defaults, name), **values[name]}
            _check_range(values[name], fields[name].metadata, key)
    try:
        return dataclasses.replace(defaults, **values)
    except (TypeError, ValueError) as error:  # a section's own __post_init__ checks
        where = prefix.rstrip(".") or "config"
        # a section that names its keys itself (DataConfig: "data.name: ...") needs no second prefix
        raise ConfigError(str(error) if str(error).startswith(prefix) else f"{where}: {error}") from error


def _set_dotted(tree: dict[str, Any], key: str, value: Any, root: type) -> None:
    """tree[a][b] = value for key 'a.b', checking that each part names a section or option.

    A free-form dict option takes sub-keys (`supernet.nasnet.C=8`); a section with a
    `name` key takes a scalar for it (`data=digits` is `data.name=digits`)."""
    if reason := unused_reason(root, key):
        raise ConfigError(f"{key}: {reason}")
    parts = key.split(".")
    cls: Any = root
    for depth, part in enumerate(parts):
        if cls is dict or typing.get_origin(cls) is dict:  # below a free-form option: any key
            if depth < len(parts) - 1:
                tree = tree.setdefault(part, {})
                continue
            tree[part] = value
            return
        hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints:
            raise _unknown_key(key, root)
        cls = hints[part]
        if depth < len(parts) - 1:
            if not (dataclasses.is_dataclass(cls) or cls is dict or typing.get_origin(cls) is dict):
                raise _unknown_key(key, root)
            tree = tree.setdefault(part, {})
            if not isinstance(tree, dict):
                raise ConfigError(f"{'.'.join(parts[: depth + 1])}: expected a mapping of keys")
    if dataclasses.is_dataclass(cls):
        section = tree.setdefault(parts[-1], {})
        if isinstance(value, dict) and isinstance(section, dict):  # `supernet.nasnet={C: 8}`: its keys
            section.update(value)
            return
        if "name" in _hints(cls) and isinstance(section, dict):  # `data=digits`: data.name
            section["name"] = value
            return
        raise ConfigError(f"{key} is a section; set one of its keys, e.g. {all_keys(cls, key + '.')[0]}=...")
    tree[parts[-1]] = value


def resolve_config_path(path: str | Path, packaged: Path | None = None) -> Path:
    """path itself, or a config in the folder `packaged` named like 'tabular_nb101' (with or without .yaml)."""
    path = Path(path)
    if path.is_file():
        return path
    if packaged is not None:
        candidate = packaged / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if candidate.is_file():
            return candidate
        names = sorted(p.stem for p in packaged.glob("*.yaml"))
        raise ConfigError(f"config file {str(path)!r} not found (packaged configs: {', '.join(names)})")
    raise ConfigError(f"config file {str(path)!r} not found")


def read_yaml(path: str | Path, packaged: Path | None = None) -> dict[str, Any]:
    """The top-level mapping of a config file (or of a packaged config's name, see
    resolve_config_path); ConfigError if it is not YAML."""
    resolved = resolve_config_path(path, packaged)
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{resolved}: cannot read it ({error})") from None
    tree = parse_yaml(text, str(resolved)) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{resolved}: expected a mapping of keys at the top level")
    return tree


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = (), *, cls: type) -> Any:
    """The `cls` config of a YAML file (or the defaults) with `key=value` overrides applied and
    checked: types and ranges of every key, then `config.check()` where the class has one.

    `path` may name one of the class's packaged configs (`cls.packaged_configs`, a folder)."""
    packaged = getattr(cls, "packaged_configs", None)
    tree: dict[str, Any] = read_yaml(path, packaged) if path is not None else {}
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {override!r}: expected key=value, e.g. study.seeds=3")
        try:
            value = parse_yaml(text, key) if text else ""
        except ConfigError:
            raise ConfigError(f"{key}: cannot parse value {text!r}") from None
        _set_dotted(tree, key.strip(), value, cls)
    config = _build(cls(), tree)
    if hasattr(config, "check"):
        config.check()
    return config


def _plain(value: Any) -> Any:
    """value as plain YAML-ready data (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists), without the keys its class does not
    use (unused_reason): what load_config reads back."""
    tree = _plain(dataclasses.asdict(config))
    for key in getattr(type(config), "unused_keys", {}):
        *sections, leaf = key.split(".")
        branch = tree
        for section in sections:
            branch = branch[section]
        branch.pop(leaf)
    return tree


def describe_options(defaults: Any, prefix: str = "", root: type | None = None) -> list[str]:
    """One help line per option of the config tree `defaults` (a config instance):
    'key=default  (type) description' (not the keys its class does not use)."""
    root = type(defaults) if root is None else root
    lines = []
    hints = _hints(type(defaults))
    for f in dataclasses.fields(defaults):
        hint, key, default = hints[f.name], f"{prefix}{f.name}", getattr(defaults, f.name)
        if unused_reason(root, key):
            continue
        if dataclasses.is_dataclass(hint):
            lines += describe_options(default, f"{key}.", root)
            continue
        text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            text += f" [{'|'.join(map(str, f.metadata['choices']))}]"
        lines.append(f"  {key}={_show(default)}  ({_type_name(hint)}) {text}".rstrip())
    return lines


def _show(value: Any) -> str:
    """value as it would be typed in an override (YAML, no spaces)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)


def flat_values(config: Any, prefix: str = "", root: type | None = None) -> dict[str, Any]:
    """{dotted key: value} of every option of the config instance `config` (not those its class does
    not use), in plain YAML-ready data (a free-form dict option is one value). What a resumed run
    compares with its folder's."""
    root = type(config) if root is None else root
    flat: dict[str, Any] = {}
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if unused_reason(root, f"{prefix}{f.name}"):
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            flat.update(flat_values(value, f"{prefix}{f.name}.", root))
        else:
            flat[f"{prefix}{f.name}"] = to_dict(value) if dataclasses.is_dataclass(value) else _plain(value)
    return flat
