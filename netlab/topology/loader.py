"""Load a topology file (YAML) into the validated model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.topology.model import Topology, check_topology

DEFAULT_TOPOLOGY = "default.yaml"


def default_topology_text() -> str:
    """The default lab of DESIGN.md §5, shipped as package data."""
    return resources.files("netlab.topology").joinpath(DEFAULT_TOPOLOGY).read_text()


def load_topology(path: str | Path | None = None) -> Topology:
    """Read and validate a topology file; None means the default lab."""
    if path is None:
        return parse_topology(default_topology_text(), source="the default topology")
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TopologyError(f"{path}: no such topology file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    return parse_topology(text, source=str(path))


def _duplicate_key(node: yaml.Node, path: tuple[str, ...] = ()) -> str | None:
    """Where a mapping repeats a key (PyYAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = ".".join((*path, key))
            if key in seen:
                line = key_node.start_mark.line + 1
                return f"line {line}: {where}: the key {key!r} is given twice"
            seen.add(key)
            found = _duplicate_key(value_node, (*path, key))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, (*path, str(index)))
            if found:
                return found
    return None


def parse_topology(text: str, source: str = "topology") -> Topology:
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError(f"{source}:{where}: not valid YAML: {problem}") from None
    if duplicate:
        raise TopologyError(f"{source}: {duplicate}")
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: expected a mapping with internet, provider and tenants")
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(f"{source}: {describe_validation_error(exc)}") from None
    try:
        return check_topology(topology)
    except TopologyError as exc:
        raise TopologyError(f"{source}: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as 'field.path: reason', plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    is_key = loc[-1:] == ["[key]"]
    path = ".".join(loc[:-1] if is_key else loc) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field (a typo?)"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    given = first.get("input")
    shows_input = first["type"] not in ("missing", "extra_forbidden") and not is_key
    if shows_input and not isinstance(given, dict | list):
        message = f"{message} (got {given!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {message}{more}"
