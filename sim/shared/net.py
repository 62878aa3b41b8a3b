"""Peer addresses: the one loopback check of every server (admin APIs answer loopback
peers only by default, docs/authserver.md, docs/appserver.md)."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_peer"]


def is_loopback_peer(remote: str | None) -> bool:
    """True for a peer address in 127.0.0.0/8 or ``::1``, IPv4-mapped ones included
    (``::ffff:127.0.0.1``); anything else, unparseable text included, is not."""
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
