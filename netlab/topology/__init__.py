"""Topology: the pydantic model of a lab and its YAML loader."""

from netlab.topology.loader import load_topology, parse_topology
from netlab.topology.model import Topology

__all__ = ["Topology", "load_topology", "parse_topology"]
