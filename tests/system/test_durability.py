"""An acknowledged write is durable on every replica before the client sees the ack, and flush()
is the file's fsync (issue 10, "Durable by default" and its "Must hold").

Power loss cannot be simulated by killing a process, so the test reads what the
real storage processes did, in order: each logs one line per durability step
after the step returned (``FFS_DEBUG_LOGGERS`` turns on the chunk engine's
``durability`` logger: "fdatasync <chunk file>", "meta <key> commit=..."),
and a replica writes those lines before it replies. So when ``flush()``
returns, every replica's log must already name every chunk written: its file
fdatasync'd and its meta committed durably at the version the chain
acknowledged. The cluster runs the defaults (nothing turns fsync on). What this
cannot show: that the disk honours fdatasync, and that a replica's lines were
written before its reply rather than just before the client looked (the
engine-level ordering test, tests/storage_service/test_chunk_engine_durability.py,
shows that order); docs/durability.md lists what each mode survives.
"""

from __future__ import annotations

import random
import re

import fsspec

from fireflyfs.deploy.local_cluster import storage_role
from fireflyfs.storage_service.chunk_meta import chunk_key

DURABILITY_LOGGER = "fireflyfs.storage_service.chunk_engine.durability"
CHUNK = 64 * 1024


def _logs(local, since: dict[int, str] | None = None) -> dict[int, str]:
    """Each storage node's log, or only what it logged after since (an earlier _logs)."""
    logs = {node: local.log_file(storage_role(node)).read_text(errors="replace")
            for node in range(1, local.storage_nodes + 1)}
    return {node: text[len(since[node]):] if since else text for node, text in logs.items()}


def _assert_durable_everywhere(logs: dict[int, str], inode: int, chunks: range) -> None:
    for index in chunks:
        key = chunk_key(inode, index).hex()
        for node, text in logs.items():
            assert re.search(rf"fdatasync \S+/chunks/{key}\.\d+\n", text), \
                f"chunk {index}: node {node} acked before its data was fdatasync'd"
            assert re.search(rf"meta {key} commit=(\d+) update=\1 ", text), \
                f"chunk {index}: node {node} acked before its committed meta was durable"


def test_flush_returns_after_every_replica_made_the_bytes_durable(make_cluster, seed):
    rng = random.Random(seed)
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=None,
                         extra_env={"FFS_DEBUG_LOGGERS": DURABILITY_LOGGER})
    assert local.fsync, "the cluster runs the durable default"
    writer_fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
    reader_fs = fsspec.filesystem("ffs", host=local.host, port=local.port, skip_instance_cache=True)
    writer_fs.mkdir("/durable", chunk_size=CHUNK)
    first = rng.randbytes(rng.randrange(2 * CHUNK, 4 * CHUNK))
    more = rng.randbytes(rng.randrange(1, CHUNK))
    with writer_fs.open("/durable/file", "wb") as handle:
        handle.write(first)
        handle.flush()                   # the fsync point: the session stays open
        logs = _logs(local)              # read at once: what the replicas had done by the ack
        inode = reader_fs.info("/durable/file")["ino"]
        _assert_durable_everywhere(logs, inode, range(-(-len(first) // CHUNK)))
        assert reader_fs.client.stat("/durable/file").length == len(first), \
            "flush settled the stored length on meta (Meta.Sync), not only the chunks' extent"
        assert reader_fs.cat("/durable/file") == first, "a new reader sees every flushed byte"
        handle.write(more)
        handle.flush()
        touched = range(len(first) // CHUNK, -(-(len(first) + len(more)) // CHUNK))
        _assert_durable_everywhere(_logs(local, since=logs), inode, touched)
        assert reader_fs.client.stat("/durable/file").length == len(first) + len(more)
        reader_fs.invalidate_cache()
        assert reader_fs.cat("/durable/file") == first + more
    assert reader_fs.info("/durable/file")["size"] == len(first) + len(more)
