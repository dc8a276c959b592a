"""The fuzzer's own parts (tests/system/fuzz_messages.py), without a cluster.

Method: for every request type of every service, generated messages must
serialize and parse back unchanged, and hinted values must show up; the
garbage must mostly be refused by the parser; Protection must replace
protected inode ids and the protected directory's name wherever they sit,
nested and repeated fields included, and record what it sent.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fireflyfs.proto import meta_pb2, mgmtd_pb2, storage_pb2, types_pb2
from tests.system.fuzz_messages import (Protection, garbage_strategy, message_class, message_strategy,
                                        method_path, service_methods)

METHODS = service_methods([meta_pb2, mgmtd_pb2, storage_pb2])
# Derandomized: these check the generators themselves, the same draws every run.
FAST = settings(max_examples=60, database=None, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def test_every_service_and_method_is_found():
    paths = {method_path(method) for _, _, method in METHODS}
    assert {"/fireflyfs.Meta/Stat", "/fireflyfs.Mgmtd/Heartbeat", "/fireflyfs.Storage/Write"} <= paths
    assert len(paths) == sum(len(m.DESCRIPTOR.services_by_name[s].methods)
                             for m, s in ((meta_pb2, "Meta"), (mgmtd_pb2, "Mgmtd"), (storage_pb2, "Storage")))


@FAST
@given(st.sampled_from(METHODS).flatmap(lambda entry: message_strategy(entry[2].input_type, {"path": ["/h"]})))
def test_generated_requests_round_trip(request):
    assert type(request).FromString(request.SerializeToString()) == request


def test_hints_show_up_often():
    seen = []

    @FAST
    @given(message_strategy(storage_pb2.WriteRequest.DESCRIPTOR, {"chain_id": [77]}))
    def draw(request):
        seen.append(request.chain_id == 77)

    draw()
    assert sum(seen) >= len(seen) // 3, f"hint drawn {sum(seen)} times in {len(seen)}"


def test_garbage_mostly_does_not_parse():
    refused = []

    @FAST
    @given(garbage_strategy(meta_pb2.RenameRequest.DESCRIPTOR))
    def draw(body):
        try:
            meta_pb2.RenameRequest.FromString(body)
            refused.append(False)
        except DecodeError:
            refused.append(True)

    draw()
    assert sum(refused) >= len(refused) // 2, f"{sum(refused)} of {len(refused)} garbage bodies refused"


def test_protection_replaces_protected_values_everywhere():
    protection = Protection(frozenset({5, 6}), "secret")
    update = storage_pb2.UpdateRequest(write=storage_pb2.WriteRequest(chunk=types_pb2.ChunkId(inode=5, index=5)))
    stat = meta_pb2.StatInodesRequest(inode_ids=[1, 5, 6, 7])
    rename = meta_pb2.RenameRequest(src="/secret/a", dst="../secret", request_id="x")
    close = meta_pb2.CloseRequest(inode_id=6, session_id=5)
    for message in (update, stat, rename, close):
        protection.apply(message)
    assert update.write.chunk.inode not in {5, 6} and update.write.chunk.index == 5
    assert list(stat.inode_ids)[0::3] == [1, 7] and not {5, 6} & set(stat.inode_ids)
    assert "secret" not in rename.src + rename.dst
    assert close.inode_id not in {5, 6} and close.session_id == 5, "only inode-naming fields change"
    assert {1, 7} <= protection.inodes_sent and not {5, 6} & protection.inodes_sent


def test_protection_guards_garbage_that_parses():
    protection = Protection(frozenset({3}), "secret")
    sync = meta_pb2.SyncRequest(inode_id=3, length_hint=2**40).SerializeToString()
    guarded = meta_pb2.SyncRequest.FromString(protection.guard(sync, meta_pb2.SyncRequest))
    assert guarded.inode_id != 3 and guarded.length_hint == 2**40
    harmless = meta_pb2.SyncRequest(inode_id=4).SerializeToString()
    assert protection.guard(harmless, meta_pb2.SyncRequest) == harmless
    unparsable = b"\x0a\x06secret\xff"
    assert b"secret" not in protection.guard(unparsable, meta_pb2.StatRequest)


def test_message_class_builds_each_request_type():
    for _, _, method in METHODS:
        assert message_class(method.input_type)().DESCRIPTOR is method.input_type
