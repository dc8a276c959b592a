"""Heads roll forward chunks that a failed update left pending.

An update that gave up (its deadline passed while the chain was broken) leaves
the chunk staged but uncommitted on the head and maybe on some successors;
those replicas answer ChunkNotCommitted for it until something completes the
update. The next client write of the chunk does (craq.ChainOp rolls a pending
leftover forward first), but a chunk may never be written again. So every few
seconds each head pushes its pending chunks whose lock is free (a held lock
means the update is still in flight) down the chain as full replaces and
commits them, exactly as a write would. Only heads do it: every replica's
pending update came through the head, which therefore has it pending too.
"""

from __future__ import annotations

import logging
import threading

from fireflyfs.common.errors import FfsError

from .chain_driver import ChainDriver
from .routing_view import RoutingView
from .target import Target

log = logging.getLogger(__name__)

sweep_interval_s_default = 2.0


class RollForwardSweeper:
    def __init__(self, targets: dict[int, Target], routing: RoutingView, driver: ChainDriver,
                 interval_s: float = sweep_interval_s_default) -> None:
        self._targets = targets
        self._routing = routing
        self._driver = driver
        self.interval_s = interval_s
        self.rolled_forward = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roll-forward", daemon=True)

    def sweep_once(self) -> int:
        """One pass over every local head's pending chunks; returns how many were completed."""
        done = 0
        for target_id, target in self._targets.items():
            chain = self._routing.chain_of_target(target_id)
            if chain is None or chain.head != target_id:
                continue
            for key in target.engine.pending_keys():
                try:
                    if self._driver.push(target, key, chain.chain_id, None, lock_timeout_s=0):
                        done += 1
                        log.info("target %d: rolled forward pending chunk %s", target_id, key.hex())
                except FfsError as exc:   # busy (in flight), fenced, chain moved: next pass
                    log.debug("target %d: roll-forward of %s skipped: %s", target_id, key.hex(), exc)
        self.rolled_forward += done
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep_once()
            except Exception:
                log.exception("roll-forward sweep failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
