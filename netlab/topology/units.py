"""Units of the topology file and of `netlab wan set`: durations, rates, loss.

One parser each, so that a topology's `wan:` and the command line accept the
same spellings and say the same thing about a typo.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$")
_DURATION_SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
_RATE_SCALE = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
_LOSS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_duration(value: object, default_unit: str = "s") -> float:
    """Seconds from 30, 30.5, "30s", "500ms", "2m"; a bare number is in `default_unit`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    if isinstance(value, int | float):
        seconds = float(value) * _DURATION_SCALE[default_unit]
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
        unit = match.group(2) or default_unit
        seconds = float(match.group(1)) * _DURATION_SCALE[unit]
    if seconds < 0:
        raise ValueError(f"{value!r}: a duration cannot be negative")
    return seconds


def parse_rate(value: object) -> int:
    """Bits per second from "10mbit", "512kbit", "1gbit" (tc's units: 1mbit = 10^6 bit/s)."""
    match = _RATE.match(str(value)) if not isinstance(value, bool) else None
    if match is None:
        raise ValueError(f"{value!r} is not a rate (e.g. 10mbit, 512kbit, 1gbit)")
    bits = int(float(match.group(1)) * _RATE_SCALE[match.group(2).lower()])
    if bits < 8_000:
        raise ValueError(f"{value!r}: a rate below 8kbit would stall every TCP connection")
    return bits


def parse_loss(value: object) -> float:
    """Percent from "1%", "0.5%", 100."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a loss (e.g. 1%, 100%)")
    match = _LOSS.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a loss (e.g. 1%, 0.5%, 100%)")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"{value!r}: loss is at most 100%")
    return percent


def format_rate(bits: int) -> str:
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits % scale == 0:
            return f"{bits // scale}{unit}"
    return f"{bits}bit"


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"
