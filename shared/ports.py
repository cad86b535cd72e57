"""TCP ports on this host: is one free to listen on, and a free one to use."""

from __future__ import annotations

import socket


def tcp_socket(host: str) -> socket.socket:
    """An unbound TCP socket of the address family of `host` (IPv6 when it has a colon)."""
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now."""
    with tcp_socket(host) as probe:
        # As uvicorn does: a port left in TIME_WAIT by a stopped server counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (another process may still take it first)."""
    with tcp_socket(host) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
