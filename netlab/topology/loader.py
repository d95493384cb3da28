"""Load a topology file (YAML) into the validated model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.topology.model import Topology, check_topology

DEFAULT_TOPOLOGY = "default.yaml"
# A 100-VM lab is ~10 KB of YAML; anything near these bounds is a mistake or an attack
# (a file of any size would be copied into the state dir and re-read by every command).
MAX_TOPOLOGY_BYTES = 1024 * 1024
# Nodes of the YAML graph once aliases are expanded: bounds "billion laughs" files,
# whose few hundred bytes expand to billions of nodes.
MAX_YAML_NODES = 200_000


def default_topology_text() -> str:
    """The default lab (docs/architecture.md#the-default-lab), shipped as package data."""
    return resources.files("netlab.topology").joinpath(DEFAULT_TOPOLOGY).read_text()


def load_topology(path: str | Path | None = None) -> Topology:
    """Read and validate a topology file; None means the default lab."""
    if path is None:
        return parse_topology(default_topology_text(), source="the default topology")
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TOPOLOGY_BYTES:
            raise TopologyError(
                f"{path}: larger than {MAX_TOPOLOGY_BYTES // 1024} KiB; not a topology file?"
            )
        text = path.read_text()
    except FileNotFoundError:
        raise TopologyError(f"{path}: no such topology file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    return parse_topology(text, source=str(path))


def _check_yaml_graph(root: yaml.Node | None) -> str | None:
    """A key given twice in one mapping (PyYAML silently keeps the last), or a graph too big.

    Each node is visited once, however many aliases point at it, and the expanded
    size is counted from memoized sizes, so an alias bomb costs nothing to refuse.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a recursive alias counts once
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = min(total, MAX_YAML_NODES + 1)
        return sizes[id(node)]

    if root is None:
        return None
    if size(root) > MAX_YAML_NODES:
        return f"expands to more than {MAX_YAML_NODES} YAML nodes (aliases?); refused"
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    where = ".".join((*path, key))
                    line = key_node.start_mark.line + 1
                    return f"line {line}: {where}: the key {key!r} is given twice"
                seen.add(key)
                pending.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, (*path, str(i))) for i, item in enumerate(node.value)]
    return None


# libyaml's parser when PyYAML has it (its wheels do): a 100-VM topology parses 10x faster
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_topology(text: str, source: str = "topology") -> Topology:
    if len(text) > MAX_TOPOLOGY_BYTES:
        raise TopologyError(f"{source}: larger than {MAX_TOPOLOGY_BYTES // 1024} KiB")
    try:
        loader = _SafeLoader(text)  # composed once, checked, then constructed
        try:
            root = loader.get_single_node()
            duplicate = _check_yaml_graph(root)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise TopologyError(f"{source}: nested too deeply to be a topology") from None
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


def printable(text: str) -> str:
    """`text` with control characters escaped: an error message stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as 'field.path: reason', plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [printable(str(part)) for part in first["loc"]]
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
