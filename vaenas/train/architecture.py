"""The architecture a retraining trains: read from a JSON file or a search run folder, checked against its space.

Accepted sources (`arch=`):
- a search run folder (one-shot or gradient): its architecture.json. The space is the file's "space"
  (or its "network" entry's), else the folder's config.yaml `space` (searches that predate the key);
- a JSON file {"space": ..., "tokens": [...]} or {"space": ..., "architecture": <the space's to_json
  form>} (both keys: they must agree), e.g. a search's architecture.json copied elsewhere;
- a retraining's own run folder: its architecture.json, written in this form at the run's start (so a
  resumed run reads the architecture it started with, wherever the source has gone).
Every problem is an ArchitectureError (a ConfigError: exit status 2) naming the file and what is wrong;
an architecture that is valid in another space than the one its file names says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaenas.config import ConfigError, read_yaml
from vaenas.spaces import SPACE_NAMES, SearchSpace, get_space

ARCHITECTURE_FILE = "architecture.json"


class ArchitectureError(ConfigError):
    """An architecture source that cannot be read or does not hold a valid architecture of its space."""


@dataclass(frozen=True)
class Architecture:
    """One architecture of a search space, and where it was read from."""

    space: str
    tokens: tuple[int, ...]
    source: str

    def search_space(self) -> SearchSpace:
        return get_space(self.space)

    def tensor(self) -> Tensor:
        """LongTensor[T]."""
        return torch.tensor(self.tokens, dtype=torch.long)

    def to_json(self) -> dict[str, Any]:
        """{"space", "tokens", "architecture" (the space's to_json form), "source"}: what read_architecture reads."""
        return {"space": self.space, "tokens": list(self.tokens),
                "architecture": self.search_space().to_json(self.tensor()), "source": self.source}


def read_architecture(source: str | Path) -> Architecture:
    """The architecture of `source` (see the module docstring); ArchitectureError naming the problem."""
    path = Path(source).expanduser()
    if path.is_dir():
        file = path / ARCHITECTURE_FILE
        if not file.is_file():
            raise ArchitectureError(f"arch: {path} holds no {ARCHITECTURE_FILE}: not the folder of a finished search "
                                    "(a search writes it when it ends)")
        document = _read_json(file)
        space = _space_of(document) or _space_of_run(path)
    elif path.is_file():
        file = path
        document = _read_json(file)
        space = _space_of(document)
    else:
        raise ArchitectureError(f"arch: {path}: no such file or folder")
    if space is None:
        raise ArchitectureError(f"arch: {file} names no search space: add \"space\": one of {', '.join(SPACE_NAMES)}")
    if space not in SPACE_NAMES:
        raise ArchitectureError(f"arch: {file}: unknown search space {space!r}; choose one of {', '.join(SPACE_NAMES)}")
    # a retraining's own copy names the source it was read from at the run's start
    source = document["source"] if isinstance(document.get("source"), str) else str(path)
    return Architecture(space, tuple(_tokens(document, space, file)), source)


def _read_json(file: Path) -> dict[str, Any]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ArchitectureError(f"arch: {file}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise ArchitectureError(f"arch: {file}: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ArchitectureError(f"arch: {file}: expected a JSON object, got {type(document).__name__}")
    return document


def _space_of(document: dict[str, Any]) -> str | None:
    """The space a document names: its "space", or its "network" entry's (a search's architecture.json)."""
    network = document.get("network")
    space = document.get("space", network.get("space") if isinstance(network, dict) else None)
    return space if space is None or isinstance(space, str) else str(space)


def _space_of_run(folder: Path) -> str | None:
    """The `space` of a search run folder's config.yaml, or None."""
    try:
        space = read_yaml(folder / "config.yaml").get("space")
    except ConfigError:
        return None
    return space if isinstance(space, str) else None


def _tokens(document: dict[str, Any], space_name: str, file: Path) -> list[int]:
    """The document's architecture as a valid token list of `space_name`."""
    network = document.get("network") if isinstance(document.get("network"), dict) else {}
    tokens = document.get("tokens", network.get("tokens"))
    described = document.get("architecture")
    if tokens is None and described is None:
        raise ArchitectureError(f"arch: {file}: no \"tokens\" or \"architecture\" entry")
    space = get_space(space_name)
    try:
        from_tokens = None if tokens is None else space.validate(torch.tensor(tokens))
        from_description = None if described is None else space.from_json(described)
    except (TypeError, ValueError, RuntimeError) as error:
        other = _fitting_space(tokens, described, space_name)
        hint = f"; it is a valid {other} architecture: is \"space\" right?" if other else ""
        raise ArchitectureError(f"arch: {file}: not a valid {space_name} architecture ({error}){hint}") from None
    if from_tokens is not None and from_description is not None and not torch.equal(from_tokens, from_description):
        raise ArchitectureError(f"arch: {file}: its \"tokens\" {from_tokens.tolist()} and its \"architecture\" "
                                f"{from_description.tolist()} are different architectures")
    return (from_tokens if from_tokens is not None else from_description).tolist()


def _fitting_space(tokens: Any, described: Any, refused: str) -> str | None:
    """Another space in which the tokens or the description are a valid architecture, or None."""
    for name in SPACE_NAMES:
        if name == refused:
            continue
        space = get_space(name)
        try:
            if tokens is not None:
                space.validate(torch.tensor(tokens))
            else:
                space.from_json(described)
        except (TypeError, ValueError, RuntimeError, KeyError):
            continue
        return name
    return None
