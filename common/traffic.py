"""Traffic classes: one DSCP code point per kind of traffic sharing the network.

Fire-Flyer 2 keeps one fabric congestion-free for training and storage by
giving each kind of traffic its own InfiniBand service level, mapped to its own
virtual lane with a configured share ([FF] §VI-A1). On Ethernet/TCP the
service level becomes the DSCP field of every IP packet, and the virtual lane
becomes a switch queue (in the testbed: an HTB class matched on DSCP).

Defaults, and why:

========== ======== ====================================================================
class      DSCP     reason
========== ======== ====================================================================
HFREDUCE   EF  46   gradient allreduce: small, latency-critical, on the step's critical
                    path; Expedited Forwarding is the PHB built for that (RFC 3246)
COLLECTIVE CS4 32   other collectives (NCCL-like, gloo): bulk but synchronous; a class of
                    its own so it neither starves HFReduce nor is starved by storage
STORAGE    AF11 10  storage data: the heaviest, most elastic load (it can wait a few ms);
                    AF1x is the high-throughput-data class of RFC 4594
CONTROL    CS2 16   metadata, mgmtd, heartbeats, rendezvous: tiny and rare but must get
                    through during storage incast; CS2 is RFC 4594's OAM class (CS6 is
                    reserved for routing protocols, which this is not)
========== ======== ====================================================================

Overrides, strongest first: the environment (``FFS_DSCP_STORAGE=AF21`` or
``=18``), then a TOML file named by ``FFS_FABRIC_CONFIG`` with a
``[traffic_classes]`` table (``hfreduce = "EF"``). Values are a number 0..63
or a standard name (EF, CSn, AFxy).
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import socket

log = logging.getLogger(__name__)

config_env = "FFS_FABRIC_CONFIG"
dscp_env_prefix = "FFS_DSCP_"
dscp_max = 63


class TrafficClass(enum.Enum):
    HFREDUCE = "hfreduce"
    COLLECTIVE = "collective"
    STORAGE = "storage"
    CONTROL = "control"


DSCP_DEFAULTS: dict[TrafficClass, int] = {
    TrafficClass.HFREDUCE: 46,     # EF
    TrafficClass.COLLECTIVE: 32,   # CS4
    TrafficClass.STORAGE: 10,      # AF11
    TrafficClass.CONTROL: 16,      # CS2
}


def parse_dscp(value: str | int) -> int:
    """A DSCP code point from a number or a name such as EF, CS4, AF11."""
    if isinstance(value, int):
        code = value
    else:
        text = str(value).strip().upper()
        if text.isdigit():
            code = int(text)
        elif text == "EF":
            code = 46
        elif text == "BE" or text == "DEFAULT":
            code = 0
        elif len(text) == 3 and text.startswith("CS") and text[2] in "01234567":
            code = int(text[2]) << 3
        elif len(text) == 4 and text.startswith("AF") and text[2] in "1234" and text[3] in "123":
            code = (int(text[2]) << 3) | (int(text[3]) << 1)
        else:
            raise ValueError(f"not a DSCP value or name: {value!r}")
    if not 0 <= code <= dscp_max:
        raise ValueError(f"DSCP {code} outside 0..{dscp_max}")
    return code


def _as_class(traffic_class: TrafficClass | str) -> TrafficClass:
    if isinstance(traffic_class, TrafficClass):
        return traffic_class
    try:
        return TrafficClass(str(traffic_class).lower())
    except ValueError:
        names = ", ".join(c.value for c in TrafficClass)
        raise ValueError(f"unknown traffic class {traffic_class!r}; known: {names}") from None


@functools.lru_cache(maxsize=1)
def _file_overrides(path: str) -> dict[TrafficClass, int]:
    import tomllib

    with open(path, "rb") as handle:
        table = tomllib.load(handle).get("traffic_classes", {})
    return {_as_class(name): parse_dscp(value) for name, value in table.items()}


def dscp_map() -> dict[TrafficClass, int]:
    """The DSCP of every class after file and environment overrides (read on each call)."""
    codes = dict(DSCP_DEFAULTS)
    path = os.environ.get(config_env)
    if path:
        codes.update(_file_overrides(path))
    for cls in TrafficClass:
        value = os.environ.get(dscp_env_prefix + cls.name)
        if value:
            codes[cls] = parse_dscp(value)
    return codes


def dscp_of(traffic_class: TrafficClass | str) -> int:
    return dscp_map()[_as_class(traffic_class)]


def tos_of(traffic_class: TrafficClass | str) -> int:
    """The IPv4 TOS byte (DSCP in the upper six bits, ECN bits left zero)."""
    return dscp_of(traffic_class) << 2


def mark_socket(sock: socket.socket, traffic_class: TrafficClass | str) -> int:
    """Set the class's DSCP on sock (IP_TOS for v4, IPV6_TCLASS for v6); returns the TOS byte.

    Mark a listener before accept() and each accepted socket too: Linux does
    not copy the listener's TOS to accepted sockets unless
    net.ipv4.tcp_reflect_tos is on, and the reply direction is what a reader
    (an HFReduce child, a storage client) receives through its bottleneck.
    """
    tos = tos_of(traffic_class)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
        # A dual-stack v6 socket may carry v4 packets, which take IP_TOS.
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        except OSError:
            pass
    elif sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    return tos


def socket_tos(sock: socket.socket) -> int:
    """The TOS byte a socket sends with (for tests and diagnostics)."""
    if sock.family == socket.AF_INET6:
        return sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS)
    return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)


def grpc_options(traffic_class: TrafficClass | str | None) -> list[tuple[str, int]]:
    """gRPC core options marking a channel's or server's packets (grpcio >= 1.59: ``grpc.dscp``).

    Checked on grpcio 1.85 by a loopback capture: a channel and a server each
    mark their own side's packets.
    """
    if traffic_class is None:
        return []
    return [("grpc.dscp", dscp_of(traffic_class))]
