"""The local state a target reports in heartbeats (UPTODATE / ONLINE), as a pure tracker.

mgmtd's transition table only needs two facts from a storage node: "my data is
complete" (UPTODATE: a SYNCING target moves to SERVING) and "I am alive but
must be synced first" (ONLINE: OFFLINE/WAITING targets move on to SYNCING).
Every target starts ONLINE in a new process. It reports UPTODATE once routing
shows it SERVING and either

* it has been serving since the chain table was created in this process (the
  first routing that had it in a chain showed it SERVING, and before that it
  was in no chain: a fresh, empty target), or
* it was synced: SyncDone arrived while it was SYNCING.

Seeing itself OFFLINE, WAITING or LASTSRV drops it back to ONLINE and forgets
both facts: whatever happened meanwhile, it must be synced again. A restarted
process never claims UPTODATE from its old data (mgmtd also forces it through
OFFLINE on a new incarnation).
"""

from __future__ import annotations

import logging

from fireflyfs.proto import types_pb2

log = logging.getLogger(__name__)

_DOWN = (types_pb2.OFFLINE, types_pb2.WAITING, types_pb2.LASTSRV)


class LocalStateTracker:
    def __init__(self, target_id: int) -> None:
        self.target_id = target_id
        self.state = types_pb2.ONLINE
        self._seen_outside_chain = False
        self._fresh = False
        self._synced = False
        self._seen_in_chain = False

    def observe(self, in_chain: bool, public_state: int) -> int:
        """Routing shows the target (in a chain or not, with its public state); returns the new state."""
        old = self.state
        if not in_chain:
            if not self._seen_in_chain:
                self._seen_outside_chain = True
            return self.state
        if not self._seen_in_chain:
            self._seen_in_chain = True
            self._fresh = self._seen_outside_chain and public_state == types_pb2.SERVING
        if public_state in _DOWN:
            self._fresh = self._synced = False
            self.state = types_pb2.ONLINE
        elif public_state == types_pb2.SYNCING:
            self._fresh = False
            self.state = types_pb2.UPTODATE if self._synced else types_pb2.ONLINE
        elif public_state == types_pb2.SERVING and (self._fresh or self._synced):
            self.state = types_pb2.UPTODATE
        if self.state != old:
            log.info("target %d: local state %s -> %s (public %s)", self.target_id,
                     types_pb2.LocalTargetState.Name(old), types_pb2.LocalTargetState.Name(self.state),
                     types_pb2.PublicTargetState.Name(public_state))
        return self.state

    def sync_done(self) -> None:
        """The predecessor finished resync: the target's data is complete."""
        if not self._synced:
            log.info("target %d: sync done", self.target_id)
        self._synced = True
        self.state = types_pb2.UPTODATE
