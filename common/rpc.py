"""gRPC plumbing shared by every service and client: options, servers, channels, error mapping.

The one mapping between FfsError (common/errors.py, which knows no gRPC) and
gRPC statuses lives here, one direction each: a server aborts with the
class's status code, its message, and the class name in the ``ffs-error``
trailing metadata (``abort_with``); a client turns that back into the same
class (``error_from_rpc``, ``rpc_errors_mapped``), or into the closest class
for statuses the transport raised itself.

Servicers stay thin: ``map_servicer_errors`` wraps each RPC method so an
FfsError raised by the logic underneath becomes a gRPC status with a message,
and anything else becomes INTERNAL with the traceback logged, never a silent
hang. A request body that does not parse is the caller's error, not the
server's: ``make_server`` parses it inside the call and answers
INVALID_ARGUMENT (grpcio itself would answer INTERNAL).

Every server and channel carries a traffic class (common/traffic.py): its
packets are marked with that class's DSCP so a shared network can queue
storage data apart from control and from training traffic. The default is
CONTROL (meta, mgmtd, heartbeats); storage data paths pass STORAGE.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from concurrent import futures
from typing import Callable, Iterator, Sequence

import grpc

from . import auth, errors, fork_gate, limits, logs
from .auth import Principal
from .errors import FfsError, Internal, InvalidArgument
from .traffic import TrafficClass, grpc_options

log = logging.getLogger(__name__)

ERROR_METADATA_KEY = "ffs-error"

# The status each error class aborts with; a subclass not listed takes its nearest listed base's.
_STATUS_OF_ERROR: dict[type[FfsError], grpc.StatusCode] = {
    FfsError: grpc.StatusCode.UNKNOWN,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.NotADirectory: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IsADirectory: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DirectoryNotEmpty: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ChecksumMismatch: grpc.StatusCode.DATA_LOSS,
    errors.Retryable: grpc.StatusCode.UNAVAILABLE,
    errors.StaleChainVersion: grpc.StatusCode.ABORTED,
    errors.ChunkNotCommitted: grpc.StatusCode.ABORTED,
    errors.NotHead: grpc.StatusCode.ABORTED,
    errors.MissingUpdate: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.NotPrimary: grpc.StatusCode.UNAVAILABLE,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.NoSpace: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NoChainTable: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Internal: grpc.StatusCode.INTERNAL,
}

# Statuses raised by the transport itself (no ffs-error metadata).
_ERROR_OF_STATUS: dict[grpc.StatusCode, type[FfsError]] = {
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.TooLarge,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.DATA_LOSS: errors.ChecksumMismatch,
    grpc.StatusCode.UNIMPLEMENTED: errors.Internal,
}


def status_of(error_class: type[FfsError]) -> grpc.StatusCode:
    """The gRPC status code a server aborts with for error_class."""
    for cls in error_class.__mro__:
        if cls in _STATUS_OF_ERROR:
            return _STATUS_OF_ERROR[cls]
    raise TypeError(f"{error_class.__name__} is not an FfsError")


def abort_with(context: grpc.ServicerContext, exc: FfsError) -> None:
    """Server side: end the call with exc's status code, message and name. Never returns."""
    context.set_trailing_metadata(((ERROR_METADATA_KEY, errors.error_name(exc)),))
    context.abort(status_of(type(exc)), str(exc))


def error_from_rpc(rpc_error: grpc.RpcError) -> FfsError:
    """Turn a failed call into the FfsError the server raised (or the closest one)."""
    code = rpc_error.code() if hasattr(rpc_error, "code") else grpc.StatusCode.UNKNOWN
    details = (rpc_error.details() if hasattr(rpc_error, "details") else "") or ""
    name = ""
    trailing = rpc_error.trailing_metadata() if hasattr(rpc_error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_METADATA_KEY:
            name = value
    if name in errors.ERRORS_BY_NAME:
        return errors.ERRORS_BY_NAME[name](details)
    if code == grpc.StatusCode.UNAVAILABLE and ("Socket closed" in details or "andshake" in details
                                                or "certificate" in details.lower()):
        tls_state = ("this process uses TLS with the CA in FFS_TLS_CA / tls_ca=: is it the cluster's?"
                     if process_security.channel_credentials is not None else
                     "this process uses no TLS: for a cluster with TLS (the default) set FFS_TLS_CA or "
                     "tls_ca= to its CA (ffs cluster up writes DIR/tls/ca.pem)")
        return errors.Unavailable(f"{code.name}: {details} ({tls_state})")
    if code == grpc.StatusCode.CANCELLED and "Channel closed" in details:
        # Our side closed the channel under the call (a failover to another server): no answer
        # came, so as for an unreachable server the caller may retry.
        return errors.Unavailable(f"{code.name}: {details}")
    cls = _ERROR_OF_STATUS.get(code, Internal)
    return cls(f"{code.name}: {details}" if details else code.name)


@contextlib.contextmanager
def rpc_errors_mapped() -> Iterator[None]:
    """Client side: raise the FfsError a failed call carries, chained to the RpcError."""
    try:
        yield
    except grpc.RpcError as rpc_error:
        raise error_from_rpc(rpc_error) from rpc_error


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


Authenticate = Callable[[str | None], Principal]
"""A service's check of a call's bearer token (None: the call had none): the caller, or Unauthenticated."""


class Security:
    """The TLS credentials of this process's servers and channels (common/tls.py builds them).

    One per process, set once at service start (``configure``). Left unset,
    servers and channels are plaintext: the ``--insecure`` loopback mode. Tokens
    are not process-wide: each caller passes its own to make_channel (a node
    its key, a client its user's token), so one process may hold several.
    """

    def __init__(self) -> None:
        self.server_credentials: grpc.ServerCredentials | None = None
        self.channel_credentials: grpc.ChannelCredentials | None = None
        self.target_name_override: str | None = None

    def configure(self, server_credentials: grpc.ServerCredentials | None = None,
                  channel_credentials: grpc.ChannelCredentials | None = None,
                  target_name_override: str | None = None) -> None:
        self.server_credentials = server_credentials
        self.channel_credentials = channel_credentials
        self.target_name_override = target_name_override


process_security = Security()
PLAINTEXT = object()      # make_server(credentials=PLAINTEXT): no TLS whatever the process has


def make_server(address: str, max_workers: int = 16,
                traffic_class: TrafficClass | str | None = TrafficClass.CONTROL,
                authenticate: Authenticate | None = None,
                credentials: grpc.ServerCredentials | None | object = None,
                ) -> tuple[grpc.Server, int]:
    """A thread-pool gRPC server bound to address; returns (server, bound port).

    Its replies are marked with traffic_class's DSCP (None: unmarked). With
    authenticate, every call runs as the principal it returns for the call's
    token (``auth.caller()`` in the handler); without, as auth.SUPERUSER. The
    port is TLS with credentials, by default the process's server credentials
    (``plaintext()``: none, for the --insecure development mode).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=SERVER_OPTIONS + grpc_options(traffic_class),
                         interceptors=[CallsParsedAndAuthenticated(authenticate)])
    credentials = process_security.server_credentials if credentials is None else credentials
    if credentials is PLAINTEXT:
        credentials = None
    port = (server.add_secure_port(address, credentials) if credentials is not None
            else server.add_insecure_port(address))
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port


WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def advertised_address(listen: str, bound_port: int, advertise_host: str = "") -> str:
    """The host:port others are told to reach a listener bound to listen (its port: bound_port).

    advertise_host (a name or IP) wins; else the listen host, unless it is a wildcard
    (0.0.0.0: every interface), which no peer can dial: then this host's name, which must
    resolve on the other hosts (set advertise where it does not).
    """
    host = advertise_host or listen.rpartition(":")[0]
    if host in WILDCARD_HOSTS:
        import socket

        host = socket.getfqdn()
        log.warning("listening on %s: advertising %s:%d; set advertise to the address other hosts reach",
                    listen, host, bound_port)
    if ":" in host and not host.startswith("["):       # a bare IPv6 address
        host = f"[{host}]"
    return f"{host}:{bound_port}"


HEALTH_SERVICE = "grpc.health.v1.Health"


def add_health(server: grpc.Server, services: Sequence[str]):
    """gRPC's standard health service on server (grpc_health_probe, Kubernetes, load balancers):
    "" (the whole server) and each of services answer SERVING from now on; the caller says
    NOT_SERVING with ``enter_graceful_shutdown()`` when it stops. Asked without a token."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for service in ("", *services):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return servicer


class CallsParsedAndAuthenticated(grpc.ServerInterceptor):
    """Authenticate each call, then parse its request inside the call.

    Parsing inside: grpcio runs the request deserializer before the handler and
    answers INTERNAL ("Exception deserializing request!") when it raises, which
    reads as a server bug; here the handler receives the raw bytes and a body
    that does not parse gets INVALID_ARGUMENT. Authenticating: the call's
    ``authorization`` metadata becomes the caller (or UNAUTHENTICATED, counted
    in the log with the method and the peer) before any request byte is looked
    at. Streaming handlers (the health service's Watch) and the health
    service's Check pass through unchanged.
    """

    def __init__(self, authenticate: Authenticate | None = None) -> None:
        from . import metrics     # servers only: clients import this module without prometheus_client

        self._authenticate = authenticate
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        if handler_call_details.method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler                    # whether a server is up is no secret: no token asked
        parse, behavior = handler.request_deserializer, handler.unary_unary
        method = handler_call_details.method
        authenticate = self._authenticate

        metrics = self._metrics
        service_name, method_name = metrics.split_method(method)

        def parsed_then_handled(body: bytes, context: grpc.ServicerContext):
            started, outcome = time.perf_counter(), "error"
            try:
                principal = auth.SUPERUSER
                if authenticate is not None:
                    try:
                        principal = authenticate(auth.token_of_metadata(context.invocation_metadata()))
                    except FfsError as exc:
                        refused(method, context.peer(), exc, who="an unauthenticated caller")
                        abort_with(context, exc)
                try:
                    request = parse(body)
                except Exception as exc:  # DecodeError and friends: the caller sent bytes that are no request
                    abort_with(context, InvalidArgument(f"{method}: unparsable request ({len(body)} bytes): {exc}"))
                request_token = logs.request_id.set(getattr(request, "request_id", "") or "-")
                try:
                    with auth.acting_as(principal):
                        reply = behavior(request, context)
                finally:
                    logs.request_id.reset(request_token)
                outcome = "ok"
                return reply
            finally:
                metrics.RPC_SECONDS.labels(service_name, method_name).observe(time.perf_counter() - started)
                metrics.RPC_REQUESTS.labels(service_name, method_name, outcome).inc()

        return grpc.unary_unary_rpc_method_handler(parsed_then_handled, request_deserializer=None,
                                                   response_serializer=handler.response_serializer)


refusals_logged = 0


def refused(what: str, peer: str, exc: FfsError, who: str | None = None) -> None:
    """Count and log a refused call: who asked (peer and caller), what, and why."""
    global refusals_logged
    refusals_logged += 1
    log.warning("refused %s from %s (%s): %s: %s [%d refusals]", what, peer, who or auth.caller().describe(),
                type(exc).__name__, exc, refusals_logged)


class _ClientCalls(grpc.UnaryUnaryClientInterceptor):
    """Every call of a channel: counted for forks (fork_gate.py), with ``authorization: Bearer <token>``
    when the channel has a token."""

    def __init__(self, token: str | None) -> None:
        self._metadata = ((auth.AUTH_METADATA_KEY, auth.BEARER + token),) if token else ()

    def intercept_unary_unary(self, continuation, client_call_details, request):
        if self._metadata:
            metadata = tuple(client_call_details.metadata or ()) + self._metadata
            client_call_details = client_call_details._replace(metadata=metadata)
        with fork_gate.calls_counted():
            return continuation(client_call_details, request)


_PROCESS = object()


def make_channel(address: str,
                 traffic_class: TrafficClass | str | None = TrafficClass.CONTROL,
                 token: str | None = None,
                 credentials: grpc.ChannelCredentials | None | object = _PROCESS) -> grpc.Channel:
    """A channel whose requests are marked with traffic_class's DSCP (None: unmarked).

    TLS with credentials (by default the process's channel credentials; None:
    plaintext); each call carries token when given (a node's key, a user's
    token). A channel to something that is not FireflyFS (etcd) passes
    credentials=None and no token: etcd reads ``authorization`` as its own.
    Every call is counted so that a fork waits for it (fork_gate.py).
    """
    options = CHANNEL_OPTIONS + grpc_options(traffic_class)
    credentials = process_security.channel_credentials if credentials is _PROCESS else credentials
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        if process_security.target_name_override:
            options = options + [("grpc.ssl_target_name_override", process_security.target_name_override)]
        channel = grpc.secure_channel(address, credentials, options=options)
    return grpc.intercept_channel(channel, _ClientCalls(token))


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
        except errors.PermissionDenied as exc:
            refused(method.__qualname__, context.peer(), exc)
            abort_with(context, exc)
        except FfsError as exc:
            abort_with(context, exc)
        except Exception as exc:  # a bug: log it with the traceback, tell the caller clearly
            log.exception("%s failed", method.__qualname__)
            abort_with(context, Internal(f"{method.__name__}: {type(exc).__name__}: {exc}"))
    return wrapper
