"""Free TCP ports on loopback for the services the tests start."""

from trygg.net import free_port

__all__ = ["free_port"]
