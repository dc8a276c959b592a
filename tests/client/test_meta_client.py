"""MetaClient: retries while the service is unreachable, with one request_id per call.

Method: a fake pool hands out a stub that fails the first attempts with
Unavailable and records every request it saw; a fake clock bounds the retry.
"""

from __future__ import annotations

import pytest

from fireflyfs.client.config import ClientConfig
from fireflyfs.client.meta_client import MetaClient
from fireflyfs.common import errors
from fireflyfs.proto import meta_pb2


class FlakyMeta:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[tuple[str, object, float]] = []

    def __getattr__(self, method):
        def call(request, timeout=None):
            self.seen.append((method, request.request_id if hasattr(request, "request_id") else None,
                              timeout))
            if self.failures:
                self.failures -= 1
                raise errors.Unavailable("meta restarting")
            return meta_pb2.InodeReply(path="/ok")
        return call


class Pool:
    def __init__(self, stub):
        self._stub = stub

    def stub(self, address, stub_cls):
        return self._stub


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def make(failures: int, retry_s: float = 5.0):
    stub, clock = FlakyMeta(failures), Clock()
    client = MetaClient("meta:1", pool=Pool(stub), sleep=clock.sleep, clock=clock,
                        config=ClientConfig(meta_retry_time_s=retry_s, meta_timeout_s=7.0))
    return client, stub, clock


def test_a_mutation_keeps_its_request_id_across_retries():
    client, stub, _ = make(failures=3)
    client.rename("/a", "/b")
    ids = {request_id for _, request_id, _ in stub.seen}
    assert len(stub.seen) == 4 and len(ids) == 1 and ids != {""}
    assert all(timeout == 7.0 for _, _, timeout in stub.seen), "every attempt has a deadline"
    client.rename("/a", "/b")
    assert stub.seen[-1][1] not in ids, "a new call gets a new id"


def test_every_mutation_carries_a_request_id():
    client, stub, _ = make(failures=0)
    client.mkdirs("/d")
    client.create(meta_pb2.CreateRequest(path="/f"))
    client.open("/f", write=True)
    client.close(1, 1, "c", 0)
    client.remove("/f")
    client.symlink("/s", "/f")
    client.hard_link("/f", "/h")
    client.set_attr(meta_pb2.SetAttrRequest(path="/f", mode=0o600))
    client.truncate("/f", 0)
    client.copy_file("/f", "/g")
    assert all(request_id for _, request_id, _ in stub.seen)
    client.stat("/f")
    assert stub.seen[-1][1] is None


def test_an_unreachable_service_is_an_error_after_the_budget():
    client, stub, clock = make(failures=10_000, retry_s=3.0)
    with pytest.raises(errors.Unavailable, match="Meta.Stat at meta:1: gave up after"):
        client.stat("/x")
    assert 3.0 <= clock.now < 5.0
