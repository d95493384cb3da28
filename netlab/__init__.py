"""netlab: partial site failover emulated with real Linux networking."""

__version__ = "0.1.0"
