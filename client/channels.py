"""Per-process gRPC channels, stubs and worker threads, rebuilt after fork.

gRPC channels created before ``fork()`` must not be used in the child, and a
forked child has none of its parent's threads, so a thread pool inherited from
the parent never runs anything. PyTorch DataLoader workers are forked by
default and inherit the dataset (and our filesystem inside it), so every
access goes through a ``ChannelPool`` that records ``os.getpid()``. When the
pid changed it *drops* its references without closing them (closing would
shut the parent's sockets and threads down) and builds fresh ones lazily.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import grpc

from fireflyfs.common import limits, rpc

StubT = TypeVar("StubT")

io_threads_default = limits.io_threads_default
retired_channel_close_s = 60.0   # a forgotten channel is closed this long after, not at once


class ChannelPool:
    """Channels and stubs keyed by address, valid in the process that made them."""

    def __init__(self, make_channel: Callable[[str], grpc.Channel] = rpc.make_channel,
                 io_threads: int = io_threads_default) -> None:
        self._make_channel = make_channel
        self._io_threads = io_threads
        self._reset()

    def _reset(self) -> None:
        # A new lock too: a parent thread may have held the old one at fork time.
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[tuple[str, type], object] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._retired: list[tuple[float, grpc.Channel]] = []

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._reset()

    @property
    def pid(self) -> int:
        """The pid the current channels belong to."""
        return self._pid

    def channel(self, address: str) -> grpc.Channel:
        self._check_pid()
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._make_channel(address)
                self._channels[address] = channel
            return channel

    def stub(self, address: str, stub_cls: type[StubT]) -> StubT:
        """A stub of stub_cls over this process's channel to address."""
        self._check_pid()
        key = (address, stub_cls)
        stub = self._stubs.get(key)
        if stub is None:
            stub = stub_cls(self.channel(address))
            with self._lock:
                self._stubs[key] = stub
        return stub  # type: ignore[return-value]

    def executor(self) -> ThreadPoolExecutor:
        """This process's pool of IO threads (created on first use)."""
        self._check_pid()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._io_threads,
                                                    thread_name_prefix="ffs-io")
            return self._executor

    def forget(self, address: str) -> None:
        """Drop the channel to address (e.g. after its node restarted elsewhere); the next call reconnects.

        The old channel is closed only ``retired_channel_close_s`` later: other
        threads may have calls in flight on it, and closing would cancel them.
        """
        self._check_pid()
        now = time.monotonic()
        with self._lock:
            channel = self._channels.pop(address, None)
            for key in [k for k in self._stubs if k[0] == address]:
                del self._stubs[key]
            if channel is not None:
                self._retired.append((now + retired_channel_close_s, channel))
            expired = [c for deadline, c in self._retired if deadline <= now]
            self._retired = [(d, c) for d, c in self._retired if d > now]
        for old in expired:
            old.close()

    def close(self) -> None:
        """Close everything this process opened (never the parent's)."""
        if self._pid != os.getpid():
            self._reset()
            return
        with self._lock:
            channels, executor = list(self._channels.values()), self._executor
            channels += [channel for _, channel in self._retired]
            self._channels, self._stubs, self._executor, self._retired = {}, {}, None, []
        for channel in channels:
            channel.close()
        if executor is not None:
            executor.shutdown(wait=False)


_shared_pools: dict[str | None, ChannelPool] = {}
_shared_pool_lock = threading.Lock()


def shared_pool(token: str | None = None) -> ChannelPool:
    """The module-level pool every client in this process shares by default, one per token.

    fsspec keeps one filesystem instance per thread; sharing the pool gives
    them one connection per server instead of one per thread. Calls on a pool
    with a token carry it: a client's meta and mgmtd calls (the user's token),
    a meta server's calls to storage (its node key). A client's storage calls
    go through the token-less pool: a user's token never reaches storage
    nodes, which check capabilities instead.
    """
    pool = _shared_pools.get(token)
    if pool is None:
        with _shared_pool_lock:
            pool = _shared_pools.get(token)
            if pool is None:
                make = rpc.make_channel if token is None else functools.partial(rpc.make_channel, token=token)
                pool = _shared_pools[token] = ChannelPool(make)
    return pool


def _after_fork_in_child() -> None:
    global _shared_pool_lock
    _shared_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
