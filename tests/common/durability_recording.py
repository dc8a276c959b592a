"""Recording wrappers for durability-ordering tests: an event log, an LMDB env that logs its
top-level commits, and os.fdatasync/os.fsync that log the file they synced.

The wrappers call the real functions: only the recording is added, so a test
checks the real LMDB commits and the real syncs, in the order they happened.
"""

from __future__ import annotations

import os

import lmdb


class Recorder:
    """An append-only event log shared by threads (list.append is atomic under the GIL)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def add(self, *event) -> None:
        self.events.append(event)

    def index(self, event) -> int:
        return self.events.index(event)


class RecordingTxn:
    """A top-level write txn that logs its commit (and can be told to fail it, as a full disk would)."""

    def __init__(self, txn, env: "RecordingEnv") -> None:
        self.raw = txn
        self.env = env

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def commit(self) -> None:
        number = self.env.commits_started = self.env.commits_started + 1
        self.env.recorder.add("commit-start", number)
        if number in self.env.fail_commits:
            self.raw.abort()
            raise lmdb.DiskError("injected: no space left on device")
        self.raw.commit()
        self.env.recorder.add("commit-done", number)


class RecordingEnv:
    """The real env; top-level write txns come wrapped so their commits are logged."""

    def __init__(self, env: lmdb.Environment, recorder: Recorder, fail_commits=()) -> None:
        self.env = env
        self.recorder = recorder
        self.fail_commits = set(fail_commits)
        self.commits_started = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def begin(self, write: bool = False, parent=None):
        if parent is not None:
            return self.env.begin(write=write, parent=getattr(parent, "raw", parent))
        txn = self.env.begin(write=write)
        return RecordingTxn(txn, self) if write else txn


def record_os_syncs(monkeypatch, recorder: Recorder) -> None:
    """Log ("fdatasync", path) / ("fsync", path) after each real call returns."""
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        recorder.add("fdatasync", os.readlink(f"/proc/self/fd/{fd}"))

    def fsync(fd: int) -> None:
        real_fsync(fd)
        recorder.add("fsync", os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
