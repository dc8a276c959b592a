"""Registration and heartbeat of a storage node with mgmtd, on a background thread.

Sequence: RegisterNode (retried with capped exponential backoff and jitter
until mgmtd answers; the node serves nothing until then, since RoutingView is
not ready), then Heartbeat every interval with each target's local state and
space, and its incarnation (process start time; a new one tells mgmtd this is
a restarted process whose targets must resync). Each successful reply
re-arms the fence (fencing.py), with mgmtd's heartbeat timeout when it sends
one. When HeartbeatReply.routing_version differs from the routing we hold,
or a request saw a newer chain version (RoutingView.refresh_wanted), the
thread fetches GetRoutingInfo. A heartbeat answered NotFound (mgmtd forgot
us, e.g. its store was reset) sends the node back to registration.

Time and randomness are injected (``wait`` blocks on the stop event in
production; ``rng`` draws the jitter) so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from typing import Callable

from fireflyfs.common.errors import FfsError, NotFound
from fireflyfs.common.rpc import rpc_errors_mapped
from fireflyfs.proto import mgmtd_pb2, types_pb2

from .fencing import Fence
from .access import MgmtdKeys
from .routing_view import RoutingView

log = logging.getLogger(__name__)

rpc_timeout_s_default = 5.0
register_backoff_s_initial = 0.05
register_backoff_s_max = 2.0


def _has_field(message, name: str) -> bool:
    """Feature check: fields added to mgmtd.proto by another change may not be generated yet."""
    return name in message.DESCRIPTOR.fields_by_name


class MgmtdLink:
    """Keeps one storage node registered with mgmtd and its routing fresh."""

    def __init__(self, stub, node_id: int, address: str,
                 target_infos: Callable[[], list[types_pb2.TargetInfo]],
                 target_heartbeats: Callable[[], list[mgmtd_pb2.TargetHeartbeat]],
                 routing: RoutingView, interval_s: float, *, rng: random.Random | None = None,
                 rpc_timeout_s: float = rpc_timeout_s_default, fence: Fence | None = None,
                 incarnation: int = 0, clock: Callable[[], float] = time.monotonic,
                 bulk_address: str = "", mgmtd_keys: MgmtdKeys | None = None, metrics_address: str = "") -> None:
        self._stub = stub
        self.node_id = node_id
        self.address = address
        self.bulk_address = bulk_address   # the bulk data listener ("" = none: clients use gRPC)
        self.metrics_address = metrics_address   # its /metrics ("" = not served)
        self._target_infos = target_infos
        self._target_heartbeats = target_heartbeats
        self.routing = routing
        self.interval_s = interval_s
        self._rng = rng or random.Random()
        self._rpc_timeout_s = rpc_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.registered = threading.Event()
        self.heartbeats_sent = 0
        self.fence = fence
        self.incarnation = incarnation     # process start time (ns): mgmtd sees a restart by it
        self.mgmtd_keys = mgmtd_keys       # refreshed from every reply (storage_service/access.py)
        self._clock = clock

    def _contact_ok(self, started: float, reply) -> None:
        """A reply from mgmtd: the fence opens from the time the request was sent."""
        if self.fence is None:
            return
        timeout_ms = getattr(reply, "heartbeat_timeout_ms", 0)
        if timeout_ms:
            self.fence.set_timeout(timeout_ms)
        self.fence.contact_ok(started)

    # ------------------------------------------------------------------ single steps

    def register_once(self) -> None:
        request = mgmtd_pb2.RegisterNodeRequest(
            node_id=self.node_id, type=types_pb2.NODE_STORAGE, address=self.address,
            targets=self._target_infos(), hostname=socket.gethostname(), pid=os.getpid())
        if _has_field(request, "incarnation"):
            request.incarnation = self.incarnation
        if self.bulk_address:
            request.bulk_address = self.bulk_address
        if self.metrics_address:
            request.metrics_address = self.metrics_address
        started = self._clock()
        with rpc_errors_mapped():
            reply = self._stub.RegisterNode(request, timeout=self._rpc_timeout_s)
        self._contact_ok(started, reply)
        if self.mgmtd_keys is not None:
            self.mgmtd_keys.update(reply)
        self.routing.update(reply.routing, force=True)
        if not self.registered.is_set():
            log.info("node %d registered with mgmtd as %s", self.node_id, self.address)
        self.registered.set()

    def heartbeat_once(self) -> None:
        request = mgmtd_pb2.HeartbeatRequest(node_id=self.node_id, targets=self._target_heartbeats())
        if _has_field(request, "incarnation"):
            request.incarnation = self.incarnation
        started = self._clock()
        with rpc_errors_mapped():
            reply = self._stub.Heartbeat(request, timeout=self._rpc_timeout_s)
        self._contact_ok(started, reply)
        if self.mgmtd_keys is not None:
            self.mgmtd_keys.update(reply)
        self.heartbeats_sent += 1
        if reply.routing_version != self.routing.version or self.routing.refresh_wanted.is_set():
            self.refresh_routing()

    def refresh_routing(self) -> None:
        self.routing.refresh_wanted.clear()
        known = self.routing.version or 0
        with rpc_errors_mapped():
            reply = self._stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(known_version=known),
                                              timeout=self._rpc_timeout_s)
        if reply.changed:
            # One thread asks, one reply at a time: mgmtd's answer is authoritative even if older.
            self.routing.update(reply.routing, force=True)

    # ------------------------------------------------------------------ the loop

    def _wait(self, seconds: float) -> bool:
        """Sleep up to seconds; True when asked to stop. A routing refresh request cuts it short."""
        if self._stop.wait(0) or seconds <= 0:
            return self._stop.is_set()
        deadline_step = min(seconds, 0.05)
        waited = 0.0
        while waited < seconds:
            if self._stop.wait(deadline_step):
                return True
            waited += deadline_step
            if self.routing.refresh_wanted.is_set() and self.registered.is_set():
                return False
        return False

    def run(self) -> None:
        backoff = register_backoff_s_initial
        failures = 0
        while not self._stop.is_set():
            if not self.registered.is_set():
                try:
                    self.register_once()
                    backoff = register_backoff_s_initial
                    continue
                except FfsError as exc:
                    delay = backoff * (0.5 + self._rng.random())
                    log.warning("node %d: registration with mgmtd failed (%s); retry in %.2fs",
                                self.node_id, exc, delay)
                    backoff = min(backoff * 2, register_backoff_s_max)
                    if self._wait(delay):
                        return
                    continue
            try:
                if self.routing.refresh_wanted.is_set():
                    self.refresh_routing()
                self.heartbeat_once()
                if failures:
                    log.info("node %d: heartbeat back after %d failures", self.node_id, failures)
                failures = 0
            except NotFound as exc:
                log.warning("node %d: mgmtd does not know this node (%s); registering again",
                            self.node_id, exc)
                self.registered.clear()
                continue
            except FfsError as exc:
                failures += 1
                log.warning("node %d: heartbeat failed (%d in a row): %s", self.node_id, failures, exc)
            if self._wait(self.interval_s):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_logged, name=f"mgmtd-link-{self.node_id}",
                                        daemon=True)
        self._thread.start()

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception:  # a bug: say so loudly, the node is deaf to routing from now on
            log.exception("node %d: mgmtd link thread crashed", self.node_id)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
