"""The typed-config machinery every CLI uses (vaenas.config), on a small config of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from vaenas.config import ConfigError, all_keys, describe_options, flat_values, load_config, parse_yaml, to_dict


@dataclass
class _Section:
    size: int = field(default=4, metadata={"help": "a size", "at_least": 1})
    rate: float = field(default=0.1, metadata={"help": "a rate", "above": 0})


@dataclass
class _Config:
    name: str = field(default="a", metadata={"help": "a name"})
    section: _Section = field(default_factory=_Section)
    spare: _Section = field(default_factory=_Section)

    packaged_configs: ClassVar[Path | None] = None
    unused_keys: ClassVar[dict[str, str]] = {"spare": "kept for another method"}


@pytest.mark.parametrize(("text", "value"), [("5.0e6", 5.0e6), ("1e-3", 1e-3), ("2E+2", 200.0), ("3", 3),
                                             ("0.5", 0.5), ("x1e3", "x1e3")])
def test_floats_read_as_yaml_1_2(text, value):
    """PyYAML alone reads 5.0e6 and 1e-3 as strings (YAML 1.1): a float option would refuse them."""
    assert parse_yaml(text, "key") == value and type(parse_yaml(text, "key")) is type(value)
    if isinstance(value, float):
        assert load_config(None, [f"section.rate={text}"], cls=_Config).section.rate == value


def test_yaml_errors_give_line_and_column(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: a\nsection: {size: 3\nrate: 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(line 3, column 5\)"):
        load_config(broken, cls=_Config)


def test_class_variables_are_not_options():
    assert "packaged_configs" not in all_keys(_Config)
    with pytest.raises(ConfigError, match="unknown config key 'packaged_configs'"):
        load_config(None, ["packaged_configs=x"], cls=_Config)


def test_unused_keys_are_refused_hidden_and_not_written(tmp_path):
    for override in ("spare.size=3", "spare={size: 3}"):
        with pytest.raises(ConfigError, match="spare.size: kept for another method|spare: kept for another method"):
            load_config(None, [override], cls=_Config)
    assert not any(line.strip().startswith("spare.") for line in describe_options(_Config()))
    assert "spare" not in to_dict(_Config()) and not any(key.startswith("spare") for key in flat_values(_Config()))
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("spare: {size: 3}\n")
    with pytest.raises(ConfigError, match="spare: kept for another method"):
        load_config(yaml_file, cls=_Config)


def test_a_section_takes_a_mapping_as_one_override():
    config = load_config(None, ["section={size: 7}"], cls=_Config)
    assert config.section.size == 7 and config.section.rate == 0.1
    with pytest.raises(ConfigError, match="section.size: 0 is below the minimum 1"):
        load_config(None, ["section={size: 0}"], cls=_Config)
