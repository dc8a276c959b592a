"""gRPC plumbing shared by every service and client: options, servers, channels.

Servicers stay thin: ``map_servicer_errors`` wraps each RPC method so an
FfsError raised by the logic underneath becomes a gRPC status with a message
(see errors.abort_with), and anything else becomes INTERNAL with the traceback
logged, never a silent hang.

Every server and channel carries a traffic class (fabric/traffic.py): its
packets are marked with that class's DSCP so a shared network can queue
storage data apart from control and from training traffic. The default is
CONTROL (meta, mgmtd, heartbeats); storage data paths pass STORAGE.
"""

from __future__ import annotations

import functools
import logging
from concurrent import futures

import grpc

from fireflyfs.fabric.traffic import TrafficClass, grpc_options

from . import limits
from .errors import FfsError, Internal, abort_with

log = logging.getLogger(__name__)

MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", limits.grpc_message_bytes_max),
    ("grpc.max_receive_message_length", limits.grpc_message_bytes_max),
]

CHANNEL_OPTIONS = MESSAGE_OPTIONS + [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
    # Each channel gets its own connection: clients open one per server and
    # must not share a subchannel with a forked parent.
    ("grpc.use_local_subchannel_pool", 1),
]

SERVER_OPTIONS = MESSAGE_OPTIONS + [
    ("grpc.so_reuseport", 0),
]


def make_server(address: str, max_workers: int = 16,
                traffic_class: TrafficClass | str | None = TrafficClass.CONTROL,
                ) -> tuple[grpc.Server, int]:
    """A thread-pool gRPC server bound to address; returns (server, bound port).

    Its replies are marked with traffic_class's DSCP (None: unmarked).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=SERVER_OPTIONS + grpc_options(traffic_class))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port


def make_channel(address: str,
                 traffic_class: TrafficClass | str | None = TrafficClass.CONTROL) -> grpc.Channel:
    """An insecure channel whose requests are marked with traffic_class's DSCP (None: unmarked)."""
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS + grpc_options(traffic_class))


def map_servicer_errors(servicer_cls):
    """Class decorator: every public method maps FfsError (and crashes) to gRPC statuses."""
    for name, method in list(vars(servicer_cls).items()):
        if name.startswith("_") or not callable(method):
            continue
        setattr(servicer_cls, name, _mapped(method))
    return servicer_cls


def _mapped(method):
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except FfsError as exc:
            abort_with(context, exc)
        except Exception as exc:  # a bug: log it with the traceback, tell the caller clearly
            log.exception("%s failed", method.__qualname__)
            abort_with(context, Internal(f"{method.__name__}: {type(exc).__name__}: {exc}"))
    return wrapper
