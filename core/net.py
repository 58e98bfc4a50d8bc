"""Network ports. Standard library only, so a launcher or benchmark that needs a port loads
nothing heavy."""
from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now: the one the OS hands out for port 0.

    Another process may take it before the caller binds it; good enough to start a local
    server on.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
