"""Deleting the chunks of a target that a move took out of its chain (rebalance, drain).

mgmtd marks such a target retired once its replacement is SERVING; the chunks
it holds are then a stale copy nobody reads. A thread per retired target
removes them, each under its chunk lock as a chain update takes it (an update
admitted before the target left finishes first; one admitted after is refused
as stale), and passes again until none is left, for an update that created a
chunk behind the pass. Each removal checks routing again, so a target that joins
a chain meanwhile keeps what it has. The heartbeat's chunk count of 0 then tells
mgmtd the target is free for a new chain.
"""

from __future__ import annotations

import logging
import threading

from .chunk_meta import chunk_key
from .routing_view import RoutingView
from .target import Target

log = logging.getLogger(__name__)

lock_wait_s = 60.0       # an update holding a chunk lock finishes well within this
pass_pause_s = 0.2       # before checking again for chunks created behind a pass


class RetiredWiper:
    def __init__(self, targets: dict[int, Target], routing: RoutingView) -> None:
        self._targets = targets
        self._routing = routing
        self._lock = threading.Lock()
        self._running: dict[int, threading.Thread] = {}
        self._stop = threading.Event()

    def on_routing(self, routing: RoutingView) -> None:
        with self._lock:
            for target_id, target in self._targets.items():
                thread = self._running.get(target_id)
                if (self._stop.is_set() or not routing.retired(target_id)
                        or (thread is not None and thread.is_alive())):
                    continue
                thread = threading.Thread(target=self._wipe, args=(target,), daemon=True,
                                          name=f"retired-wipe-{target_id}")
                self._running[target_id] = thread
                thread.start()

    def _wipe(self, target: Target) -> None:
        removed = 0
        while True:
            keys = [chunk_key(inode, index) for inode, index, _meta in target.engine.iter_metas()]
            if not keys:
                break
            for key in keys:
                if self._stop.is_set() or not self._routing.retired(target.id):
                    log.info("target %d: deletion of its retired replica stopped after %d chunks",
                             target.id, removed)
                    return
                with target.locks.hold(key, lock_wait_s):
                    removed += target.engine.remove(key)
            self._stop.wait(pass_pause_s)
        log.info("target %d: retired replica deleted (%d chunks)", target.id, removed)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout=5.0)
