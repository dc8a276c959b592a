"""The chunk engine makes each update durable before it returns (the replica's ack follows it).

Power loss cannot be simulated by killing a process, so this checks the order
of the durability steps instead (issue 10, "Must hold"): os.fdatasync/os.fsync
and the LMDB env are wrapped to log each real call after it returned
(tests/common/durability_recording.py), and every engine update is logged when
it starts and when it returns. For each update the log must show, between the
two: the chunk file it names fdatasync'd, the chunk directory fsync'd when the
file is new, then a synced LMDB commit that started after those and returned
before the update did. A storage replica acknowledges only after its engine
call returned (chain_driver.py), so this is the order of every replica's ack.
What these tests cannot show: that the disk honours fdatasync, or a power loss
itself (docs/durability.md).
"""

from __future__ import annotations

import lmdb
import pytest

from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key
from fireflyfs.storage_service.craq import UpdateKind
from tests.common.durability_recording import Recorder, RecordingEnv, record_os_syncs

CHUNK = 64 * 1024
KEY = chunk_key(7, 0)


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    recorder = Recorder()
    real_open = lmdb.open
    monkeypatch.setattr(lmdb, "open", lambda *args, **kwargs: RecordingEnv(real_open(*args, **kwargs),
                                                                           recorder))
    record_os_syncs(monkeypatch, recorder)
    engine = ChunkEngine(tmp_path / "target", block_size=4096, pool_files_max=0)   # the default: fsync
    yield engine, recorder
    engine.close()


def _between(events, start: int, end: int, kind: str, path: str | None = None) -> list[int]:
    return [i for i in range(start, end) if events[i][0] == kind and (path is None or events[i][1] == path)]


def _check_update(engine: ChunkEngine, recorder: Recorder, name: str, meta, *, data: bool, new_file: bool):
    events = recorder.events
    start, ack = events.index(("start", name)), events.index(("ack", name))
    ready = start
    if data:
        path = engine._path(KEY, meta.file_version)
        syncs = _between(events, start, ack, "fdatasync", path)
        assert syncs, f"{name}: no fdatasync of {path} before the ack"
        ready = syncs[-1]
    if new_file:
        dir_syncs = _between(events, start, ack, "fsync", str(engine.chunks_dir))
        assert dir_syncs, f"{name}: the new file's directory was not fsync'd before the ack"
        ready = max(ready, dir_syncs[-1])
    commits = [i for i in _between(events, ready, ack, "commit-done")
               if ("commit-start", events[i][1]) in events[ready:i]]
    assert commits, f"{name}: no synced meta commit after the data was durable and before the ack"


def test_every_update_is_durable_before_it_returns(recorded):
    engine, recorder = recorded
    steps = [
        ("new chunk", True, True, lambda: engine.write(KEY, 0, b"a" * 10_000, CHUNK, 1)),
        ("append", True, False, lambda: engine.write(KEY, 10_000, b"b" * 5_000, CHUNK, 1)),
        ("overwrite (copy-on-write)", True, True, lambda: engine.write(KEY, 100, b"c" * 300, CHUNK, 1)),
        ("stage pending", True, False, lambda: engine.stage(KEY, UpdateKind.WRITE, 4, 1, CHUNK, commit=False,
                                                            offset=15_000, data=b"d" * 1000)),
        ("commit pending", False, False, lambda: engine.commit(KEY, 4, 1)),
        ("full replace", True, True, lambda: engine.stage(KEY, UpdateKind.REPLACE, 5, 1, CHUNK, commit=True,
                                                          data=b"e" * 20_000)),
        ("shrink", False, False, lambda: engine.truncate(KEY, 3_000, CHUNK, 1)),
    ]
    for name, data, new_file, step in steps:
        recorder.add("start", name)
        meta = step()
        recorder.add("ack", name)
        _check_update(engine, recorder, name, meta, data=data, new_file=new_file)
    assert engine.read(KEY, 0, 4_000)[0] == b"e" * 3_000
    recorder.add("start", "remove")
    assert engine.remove(KEY)
    recorder.add("ack", "remove")
    _check_update(engine, recorder, "remove", None, data=False, new_file=False)
    assert engine.counters.data_syncs >= 5 and engine.counters.dir_syncs >= 3


def test_the_opt_out_syncs_nothing(monkeypatch, tmp_path):
    recorder = Recorder()
    record_os_syncs(monkeypatch, recorder)
    with ChunkEngine(tmp_path / "target", fsync=False) as engine:
        engine.write(KEY, 0, b"a" * 10_000, CHUNK, 1)
        engine.write(KEY, 100, b"b" * 100, CHUNK, 1)
        assert engine.get_meta(KEY).length == 10_000
        assert engine._env.writer.counters.writes_unsynced == 2
    assert recorder.events == [], "--no-fsync: no fdatasync, no fsync"
