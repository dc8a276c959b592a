"""ClientConfig: every deadline and retry knob of the client, in one typed object.

Why these numbers: a storage node that dies is noticed by mgmtd only after its
heartbeat timeout (a few seconds locally, 10 s by default), and only then does
the chain version change and a write find a new head; so a storage call keeps
retrying for ``retry_time_s`` (as 3FS's client: 60 s in total) before it names
the chain and what failed. Each single RPC has its own deadline so a hung node
costs one deadline, not forever. Writes get the longest: the head answers only
after the whole chain committed.

Every field can be overridden from the environment as ``FFS_CLIENT_<FIELD>``
(e.g. ``FFS_CLIENT_RETRY_TIME_S=5``), which reaches clients inside forked
DataLoader workers and CLI runs without plumbing. A program can set defaults
for every client it makes with ``set_process_defaults`` (the ``ffs`` command's
``--timeout``); the environment still wins over those, explicit arguments over
both.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

ENV_PREFIX = "FFS_CLIENT_"

_process_defaults: dict[str, float] = {}


def set_process_defaults(fields: Mapping[str, float]) -> dict[str, float]:
    """Defaults for every later ClientConfig.from_env in this process, under the environment's
    values; replaces the previous ones, which it returns (to restore them)."""
    names = {field.name for field in dataclasses.fields(ClientConfig)}
    unknown = set(fields) - names
    if unknown:
        raise ValueError(f"no ClientConfig field {sorted(unknown)}")
    previous = dict(_process_defaults)
    _process_defaults.clear()
    _process_defaults.update(fields)
    return previous


@dataclasses.dataclass(frozen=True, slots=True)
class ClientConfig:
    storage_read_timeout_s: float = 20.0      # one BatchRead
    storage_write_timeout_s: float = 30.0     # one Write: head -> ... -> tail and back
    storage_other_timeout_s: float = 30.0     # truncate, remove, last-chunk queries, fsck calls
    meta_timeout_s: float = 120.0             # one Meta call (recursive removes and copies run there)
    mgmtd_timeout_s: float = 5.0              # one routing fetch
    retry_time_s: float = 60.0                # a storage operation gives up after this long
    meta_retry_time_s: float = 60.0           # an unreachable metadata service, likewise
    retry_backoff_s_first: float = 0.05
    retry_backoff_s_max: float = 1.0
    not_committed_backoff_s: float = 0.005    # a chunk mid-write: it commits within a chain round trip
    not_committed_tries_before_tail: int = 2  # then ask the tail, which commits first
    failed_node_avoid_s: float = 2.0          # reads skip a node that just failed, while others serve
    # The I/O engine (why these numbers: storage_client.py and bench/data_plane.py).
    bulk_enabled: int = 1                     # 1: use storage nodes' bulk listeners when routing names one
    bulk_read_bytes_max: int = 8 * 1024 * 1024   # one bulk read request (a node's batch is cut at this)
    bulk_read_ios_max: int = 4096             # ... and at this many IOs (more, smaller requests cost more CPU)
    node_requests_inflight_max: int = 4       # concurrent data requests to one storage node, per call
    requests_inflight_max: int = 16           # concurrent data requests per call in total
    readahead_chunks: int = 4                 # sequential fsspec reads keep this many chunk reads ahead
    write_behind_chunks: int = 4              # buffered fsspec writes keep this many chunk writes in flight
    # Request-to-send on bulk reads (client/rts.py): servers send only with one of K permits of this
    # process. Off by default: it helps only behind a shared bottleneck (ffs bench fabric).
    rts_enabled: int = 0
    rts_max_concurrent: int = 64              # K, as 3FS's max_concurrent_transmission
    rts_wait_s: float = 10.0                  # a read waiting longer than this for a permit fails
    # Write sessions are renewed every third of the lease the metadata service announces
    # (client/session_lease.py); a non-zero value renews at least this often.
    session_renew_interval_s: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"ClientConfig.{field.name} must not be negative")
        if self.retry_backoff_s_first > self.retry_backoff_s_max:
            raise ValueError("retry_backoff_s_first exceeds retry_backoff_s_max")
        for name in ("bulk_read_bytes_max", "bulk_read_ios_max", "node_requests_inflight_max",
                     "requests_inflight_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClientConfig.{name} must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "ClientConfig":
        """Defaults, then FFS_CLIENT_* variables, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values: dict = dict(_process_defaults)
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                kind = int if field.type in (int, "int") else float
                try:
                    values[field.name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a number") from exc
        values.update(overrides)
        return cls(**values)
