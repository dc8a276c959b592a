"""Every listing reply fits one message: BatchStat, List and Find stop at a byte budget and say "more".

Goal: 10,000 inline files of 16 KiB (160 MiB) or pages of long paths cannot
make a reply exceed the gRPC limit; the client still gets one result per path.
Method: the namespace with a small budget (monkeypatched limit) checks where
replies stop; a real MetaServer in this process and the real MetaClient check
that the paging is invisible to callers, once with the real budget and more
inline bytes than it holds.
"""

from __future__ import annotations

import pytest

from fireflyfs.client.meta_client import MetaClient
from fireflyfs.common import limits
from fireflyfs.meta_service.server import MetaConfig, MetaServer
from fireflyfs.proto import meta_pb2, types_pb2
from tests import trust

from .conftest import install_chain_table
from .fakes import FakeChunkStore

NOW = 1_000
SMALL_BUDGET = 64 * limits.KiB


def payload(i: int) -> bytes:
    return bytes([i % 251]) * limits.inline_data_bytes_max


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(limits, "meta_reply_bytes_max", SMALL_BUDGET)


def test_batch_stat_stops_at_the_budget_and_says_more(ns, small_budget):
    paths = [f"/f{i:02d}" for i in range(12)]
    for i, path in enumerate(paths):
        ns.create_inline(path, payload(i), NOW)
    results, more = ns.batch_stat(paths, inline_ok=True)
    assert more and 1 <= len(results) < len(paths)
    assert sum(r.ByteSize() for r in results) <= SMALL_BUDGET
    assert [r.inline_data for r in results] == [payload(i) for i in range(len(results))], "in order"
    rest, more = ns.batch_stat(paths[len(results):], inline_ok=True)
    assert len(results) + len(rest) <= len(paths)
    attrs, more = ns.batch_stat(paths, attrs_only=True)
    assert not more and len(attrs) == len(paths), "without bytes the same paths fit"


def test_one_item_larger_than_the_budget_still_goes(ns, monkeypatch):
    monkeypatch.setattr(limits, "meta_reply_bytes_max", 1)
    ns.create_inline("/a", b"a" * 100, NOW)
    ns.create_inline("/b", b"b" * 100, NOW)
    results, more = ns.batch_stat(["/a", "/b"], inline_ok=True)
    assert len(results) == 1 and more, "every reply makes progress"


def test_list_and_find_page_by_bytes(ns, small_budget):
    long_name = "n" * limits.name_bytes_max
    target = "/" + "t" * (limits.symlink_target_bytes_max - 1)
    for i in range(100):
        ns.symlink(f"/{long_name[:-3]}{i:03d}", target, NOW)
    entries, more = ns.list("/", with_attrs=True)
    assert more and 1 <= len(entries) < 100
    assert sum(e.ByteSize() for e in entries) <= SMALL_BUDGET
    found, more = ns.find("/", limit=limits.list_page_entries_max)
    assert more and 1 <= len(found) < 100
    names = []
    after = ""
    while True:
        page, more = ns.list("/", start_after=after, with_attrs=True)
        names += [e.name for e in page]
        if not more:
            break
        after = page[-1].name
    assert len(names) == 100 == len(set(names))


@pytest.fixture
def server(tmp_path):
    served = MetaServer(MetaConfig(data_dir=str(tmp_path), gc_interval_ms=60_000,
                                   admin_token_file=trust.admin_token_file(tmp_path), **trust.meta_tls_config()),
                        chunk_store=FakeChunkStore())
    install_chain_table(served.store)
    served.start()
    try:
        yield served
    finally:
        served.stop(0)


def test_the_client_fetches_the_rest_transparently(server, small_budget):
    client = MetaClient(server.address, coalesce=False, token=trust.ADMIN_TOKEN)
    paths = [f"/f{i:02d}" for i in range(20)]
    for i, path in enumerate(paths):
        client.create_inline(path, payload(i))
    paths.insert(5, "/missing")
    results = client.batch_stat(paths, inline_ok=True).results
    assert len(results) == len(paths)
    assert results[5].error == "NotFound"
    data = [r.inline_data for r in results[:5] + results[6:]]
    assert data == [payload(i) for i in range(20)]


def test_more_inline_bytes_than_one_message_holds(server):
    """The real budget: inline bytes past it arrive in several replies, each under the limit."""
    count = limits.meta_reply_bytes_max // limits.inline_data_bytes_max + 100
    store = server.namespace
    for i in range(count):
        store.create_inline(f"/big{i:05d}", payload(i), NOW)
    client = MetaClient(server.address, coalesce=False, token=trust.ADMIN_TOKEN)
    sent = []
    call = client._call

    def counting(method, request, retry=True, timeout_s=None):
        reply = call(method, request, retry, timeout_s)
        sent.append(reply.ByteSize())
        return reply

    client._call = counting
    paths = [f"/big{i:05d}" for i in range(count)]
    results = client.batch_stat(paths, inline_ok=True).results
    assert [r.inline_data for r in results] == [payload(i) for i in range(count)]
    assert len(sent) >= 2 and max(sent) <= limits.meta_reply_bytes_max + 1024
    assert all(r.inode.type == types_pb2.INODE_FILE for r in results)
    assert isinstance(results[0], meta_pb2.StatResult)
