"""Fuzz every gRPC method of meta, mgmtd and storage: the servers hold and the stored data does not move.

Goal (issue 10, item 7): malformed and extreme requests to any RPC get an
answer within a deadline, OK or a clear status (never UNKNOWN or INTERNAL,
which mean an unhandled exception, and never a hang); every service still
answers a health probe after each method; and a protected data set is
byte-identical afterwards, its namespace unchanged, fsck clean.

Method:
- Methods come from the proto descriptors (``fuzz_messages.service_methods``),
  so RPCs added later are fuzzed without edits; ``PROBES`` must name a health
  probe for every service (a new service fails here instead of going unfuzzed).
- Per method, hypothesis draws ``FFS_FUZZ_EXAMPLES`` well-formed requests with
  extreme and hinted field values (hints are the cluster's real chain ids,
  versions, target and node ids, and the paths, inode ids and session ids of
  a fresh "play" directory made for each method to change), and half as many raw
  garbage bodies sent without a serializer. Then four times as many calls to
  all the methods interleaved, for bugs that take two calls. Seeded from ``FFS_SEED``: the same
  seed sends the same requests (the servers' state may still differ with
  timing, e.g. background GC); ``FFS_FUZZ_METHODS=CopyFile,Sync`` limits a
  replay to a few methods (each method's draws depend only on the seed).
- Meta and Storage run on a cluster holding the protected set: a directory
  with a random name under the root and a few files, some multi-chunk, some
  inline. Requests are kept out of its reach by ``Protection``: a field naming
  an inode (``inode_id``, ``ChunkId.inode``, ...) never holds a protected
  inode id, and no string contains the protected directory's name, so no
  path, link target or chunk id can reach it. What the fuzzer writes to its
  own inodes through the chain-internal storage API (an ``Update`` to one
  replica, a ``Write`` to an inode meta never made) is legitimate damage:
  fsck must report it on those inodes only, ``--repair`` must fix it, and
  fsck must then be clean.
- Mgmtd's methods change cluster state by design (SetTargetState takes a
  target offline, RegisterNode with an existing id replaces its address,
  Heartbeat reports local states, CreateChainTable makes tables), so they run
  against a throwaway one-node cluster where they may do so; the properties
  there are the per-call ones and that mgmtd and meta still answer.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import zlib
from typing import Callable

import crc32c
import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from fireflyfs.cli.fsck_plan import plan_repair
from fireflyfs.cli.fsck_runner import FsckRunner
from fireflyfs.client.client import FfsClient
from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.rpc import make_channel
from fireflyfs.proto import meta_pb2, mgmtd_pb2, storage_pb2, types_pb2
from tests import trust

from tests.conftest import announce_seed, seed_from_env
from tests.system.fuzz_messages import (Protection, garbage_strategy, message_class, message_strategy,
                                        method_path, service_methods)

EXAMPLES_ENV = "FFS_FUZZ_EXAMPLES"
METHODS_ENV = "FFS_FUZZ_METHODS"
examples_default = 30
examples_soak = 300
fsck_recheck_delay_s = 0.2
repair_rounds_max = 2            # fsck --repair rounds after the fuzz run, until fsck is clean
mixed_examples_factor = 4        # interleaved calls after the per-method phase: examples x this
deadline_s = float(os.environ.get("FFS_FUZZ_DEADLINE_S", "20"))
chunk_size_bytes = 64 * KiB

# Statuses that mean the server failed to handle the request: a crash (UNKNOWN, INTERNAL) or a hang.
BAD_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED})

# One cheap read-only call per service; answering it means the service still serves.
PROBES = {
    "Meta": ("StatFs", types_pb2.Empty()),
    "Storage": ("SpaceInfo", types_pb2.Empty()),
    "Mgmtd": ("GetRoutingInfo", mgmtd_pb2.GetRoutingInfoRequest()),
}


@dataclasses.dataclass(frozen=True)
class Failure:
    method: str
    kind: str            # "message" or "garbage" or "probe"
    code: str
    details: str
    example: str

    def __str__(self) -> str:
        return f"{self.method} [{self.kind}] -> {self.code}: {self.details[:300]}\n    example: {self.example[:600]}"


class Fuzzer:
    """Sends generated requests to the channels of each service and records every bad answer."""

    def __init__(self, channels: dict[str, list[grpc.Channel]], hints: Callable[[str], dict[str, list]],
                 seed: int, examples: int, protection: Protection | None = None) -> None:
        """hints(phase) returns the hints for one phase (a method, or "mixed"); it may first make
        fresh things to name, so each method finds valid targets, whatever the one before did."""
        self.channels = channels
        self.hints_for = hints
        self.hints: dict[str, list] = {}
        self.seed = seed
        self.examples = examples
        self.protection = protection
        self.failures: list[Failure] = []
        self.calls = 0
        self.codes: collections.Counter[tuple[str, str]] = collections.Counter()   # (method, status) -> calls
        self.sample_details: dict[tuple[str, str], str] = {}    # (method, status) -> the first message seen

    def run(self, methods) -> None:
        """Each method on its own, a probe after each; then calls to all of them interleaved."""
        for service, name, method in methods:
            assert service in PROBES, f"service {service} has no health probe in PROBES: add one"
            self.hints = self.hints_for(name)
            self._fuzz_method(service, method)
            self._probe(service, f"after {method_path(method)}")
        self.hints = self.hints_for("mixed")
        self._fuzz_mixed(methods)
        for service in sorted({service for service, _, _ in methods}):
            self._probe(service, "after the mixed phase")

    def _settings(self, examples: int, salt: str):
        method_seed = (self.seed ^ zlib.crc32(salt.encode())) & 0xFFFFFFFF

        def decorate(test):
            test = settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                            suppress_health_check=list(HealthCheck))(test)
            return hypothesis_seed(method_seed)(test)
        return decorate

    def _fuzz_method(self, service: str, method) -> None:
        path = method_path(method)
        channels = self.channels[service]

        @self._settings(self.examples, path)
        @given(message_strategy(method.input_type, self.hints), st.booleans(), st.sampled_from(channels))
        def well_formed(request, fix_checksums, channel):
            self._send_message(method, request, fix_checksums, channel)

        @self._settings(max(1, self.examples // 2), path + "#garbage")
        @given(garbage_strategy(method.input_type, self.hints), st.sampled_from(channels))
        def garbage(body, channel):
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            if self.protection is not None:
                body = self.protection.guard(body, message_class(method.input_type))
            self._call(path, "garbage", call, body, repr_of=repr)

        well_formed()
        garbage()

    def _fuzz_mixed(self, methods) -> None:
        """Calls to every method in one random order: some bugs take two calls (a huge Sync hint,
        then a CopyFile of that file), which one method at a time rarely lines up."""
        def one_call(entry):
            service, _, method = entry
            return st.tuples(st.just(method), message_strategy(method.input_type, self.hints), st.booleans(),
                             st.sampled_from(self.channels[service]))

        @self._settings(self.examples * mixed_examples_factor, "mixed")
        @given(st.sampled_from(methods).flatmap(one_call))
        def mixed(drawn):
            self._send_message(*drawn)

        mixed()

    def _send_message(self, method, request, fix_checksums: bool, channel: grpc.Channel) -> None:
        if self.protection is not None:
            self.protection.apply(request)
        if fix_checksums:
            _fix_checksums(request)
        call = channel.unary_unary(method_path(method), request_serializer=type(request).SerializeToString,
                                   response_deserializer=message_class(method.output_type).FromString)
        self._call(method_path(method), "message", call, request, repr_of=_short_repr)

    def _call(self, path: str, kind: str, call, request, repr_of) -> None:
        self.calls += 1
        try:
            call(request, timeout=deadline_s)
            self.codes[path, "OK"] += 1
        except grpc.RpcError as exc:
            self.codes[path, exc.code().name] += 1
            if kind == "message":
                self.sample_details.setdefault((path, exc.code().name), (exc.details() or "")[:100])
            if exc.code() in BAD_CODES:
                self.failures.append(Failure(path, kind, exc.code().name, exc.details() or "", repr_of(request)))

    def _probe(self, service: str, when: str) -> None:
        name, request = PROBES[service]
        for channel in self.channels[service]:
            path = f"/fireflyfs.{service}/{name}"
            call = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                       response_deserializer=None)
            try:
                call(request, timeout=deadline_s)
            except grpc.RpcError as exc:
                self.failures.append(Failure(path, "probe", exc.code().name, exc.details() or "", when))

    def summary(self) -> str:
        """Per method, how many calls ended with each status (shows how deep the requests got)."""
        by_method: dict[str, list[str]] = collections.defaultdict(list)
        for (path, code), count in sorted(self.codes.items()):
            by_method[path].append(f"{code}={count}")
        lines = [f"  {path}: {' '.join(codes)}" for path, codes in by_method.items()]
        lines += [f"    e.g. {path} {code}: {details}" for (path, code), details in sorted(self.sample_details.items())]
        return "\n".join(lines)

    def report(self) -> str:
        return f"{len(self.failures)} bad answers in {self.calls} calls:\n" + "\n".join(map(str, self.failures))


def _short_repr(message) -> str:
    """The example as text, long strings and bytes cut so the report stays readable."""
    text = str(message).replace("\n", " ")
    return text if len(text) < 2000 else text[:2000] + "..."


def _fix_checksums(message) -> None:
    """Where a message carries ``data`` and its ``checksum``, make the checksum right (to get past the CRC check)."""
    fields = message.DESCRIPTOR.fields_by_name
    if "data" in fields and "checksum" in fields and fields["data"].type == fields["data"].TYPE_BYTES:
        message.checksum = crc32c.crc32c(message.data)
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            for item in (value if field.is_repeated else [value]):
                _fix_checksums(item)


# ---------------------------------------------------------------------- the cluster's data sets

@dataclasses.dataclass
class ProtectedSet:
    directory: str
    files: dict[str, bytes]
    listing: list
    directory_inode: types_pb2.Inode

    @property
    def inode_ids(self) -> frozenset[int]:
        return frozenset({self.directory_inode.id} | {entry.inode_id for entry in self.listing})


def write_protected_set(client: FfsClient, rng: random.Random) -> ProtectedSet:
    directory = "/" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
    client.mkdir(directory, chunk_size=chunk_size_bytes)
    sizes = [0, 100, chunk_size_bytes + 1, 3 * chunk_size_bytes + rng.randrange(chunk_size_bytes),
             rng.randrange(1, 4 * chunk_size_bytes)]
    files = {}
    for size in sizes:
        name = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(10))
        data = rng.randbytes(size)
        client.write_file(f"{directory}/{name}", data)
        files[f"{directory}/{name}"] = data
    return ProtectedSet(directory, files, sorted_listing(client, directory), client.stat(directory))


def sorted_listing(client: FfsClient, directory: str) -> list:
    return sorted(client.listdir(directory, with_attrs=True), key=lambda entry: entry.name)


def play_hints(client: FfsClient, rng: random.Random, phase: str) -> dict[str, list]:
    """A fresh directory the fuzzer may change, and the names, ids and sessions in it as hints."""
    play = f"/play-{phase}"
    client.mkdir(f"{play}/sub", parents=True, chunk_size=chunk_size_bytes)
    paths = [f"{play}/f{i}" for i in range(4)]
    for i, path in enumerate(paths):
        client.write_file(path, rng.randbytes(i * chunk_size_bytes + 10))
    # Extreme but legal: 10 bytes of data, then a hole up to 1 TiB (copies and reads must not walk it).
    paths.append(f"{play}/sparse")
    client.write_file(paths[-1], rng.randbytes(10))
    client.truncate(paths[-1], 2**40)
    client.symlink(f"{play}/link", paths[2])
    handles = [client.open(paths[1], write=True), client.open(paths[3], write=True)]
    inodes = [client.stat(path).id for path in paths] + [client.stat(f"{play}/sub").id]
    names = paths + [play, f"{play}/sub", f"{play}/link", f"{play}/new", f"{play}/sub/new", "/"]
    return {
        "path": names, "src": names, "dst": names, "target": names, "start_after": ["f1", f"{play}/f0"],
        "inode_id": inodes, "inode_ids": inodes, "inode": inodes, "id": inodes,
        "session_id": [handle.session_id for handle in handles], "client_id": [client.client_id],
        # Mostly none: a reused request_id replays its first outcome, or is refused for another method.
        "request_id": ["", "fuzz-1"], "index": [0, 1, 2, 3],
        "chunk_size": [chunk_size_bytes, 4 * MiB], "length": [0, 1, chunk_size_bytes, 2**40],
        "length_hint": [0, chunk_size_bytes, 2**40, 2**64 - 1],
        "offset": [0, chunk_size_bytes - 1],
    }


def routing_hints(routing: types_pb2.RoutingInfo) -> dict[str, list]:
    targets = [target.id for target in routing.targets]
    return {
        "chain_id": [chain.id for chain in routing.chains],
        "chain_version": [chain.version for chain in routing.chains],
        "target_id": targets, "from_target": targets, "to_target": targets,
        "node_id": [node.id for node in routing.nodes],
        "table_id": [table.id for table in routing.chain_tables],
    }


def channels_of(local, routing: types_pb2.RoutingInfo) -> dict[str, list[grpc.Channel]]:
    # As the admin: the fuzzed requests reach every handler (without a token they would all stop at
    # authentication, which test_trust_attacks.py covers).
    meta = make_channel(local.meta_address, token=trust.ADMIN_TOKEN)
    storage = [make_channel(node.address, token=trust.ADMIN_TOKEN) for node in routing.nodes
               if node.type == types_pb2.NODE_STORAGE]
    assert storage, "the cluster has no storage node to fuzz"
    return {"Meta": [meta], "Mgmtd": [meta], "Storage": storage}


def chosen_methods(methods, services: tuple[str, ...]):
    """The methods of services, or only those FFS_FUZZ_METHODS names (comma-separated, to replay a few)."""
    wanted = {name for name in os.environ.get(METHODS_ENV, "").split(",") if name}
    chosen = [m for m in methods if m[0] in services and (not wanted or m[1] in wanted)]
    assert chosen or wanted, f"no methods in {services}"
    return chosen


def replay_env(examples: int) -> dict[str, object]:
    env: dict[str, object] = {EXAMPLES_ENV: examples}
    if os.environ.get(METHODS_ENV):
        env[METHODS_ENV] = os.environ[METHODS_ENV]
    return env


def fuzz_examples(default: int) -> int:
    return int(os.environ.get(EXAMPLES_ENV, default))


# ---------------------------------------------------------------------- the tests

def run_meta_and_storage(make_cluster, request, examples: int, args: str = "") -> None:
    seed = seed_from_env()
    announce_seed(request, seed, env=replay_env(examples), args=args, examples=examples, deadline_s=deadline_s)
    rng = random.Random(seed)
    local = make_cluster(storage_nodes=3, replicas=3, targets_per_node=1, heartbeat_timeout_ms=None)
    client = FfsClient(local.meta_address)
    protected = write_protected_set(client, rng)
    runner = FsckRunner(local.meta_address, recheck_delay_s=fsck_recheck_delay_s)
    before = runner.check()
    assert before.clean, f"fsck before fuzzing: {before.to_json()}"

    routing = client.routing.routing_info()
    protection = Protection(protected.inode_ids, protected.directory.lstrip("/"))
    fuzzer = Fuzzer(channels_of(local, routing),
                    lambda phase: {**play_hints(client, rng, phase), **routing_hints(routing)},
                    seed, examples, protection)
    methods = chosen_methods(service_methods([meta_pb2, storage_pb2]), ("Meta", "Storage"))
    fuzzer.run(methods)
    print(f"fuzzed {len(methods)} methods with {fuzzer.calls} calls; "
          f"inode ids named: {len(protection.inodes_sent)}\n{fuzzer.summary()}", flush=True)

    for role in local.roles():
        assert local.pid(role) is not None, f"{role} died during the fuzz run"
    assert not fuzzer.failures, fuzzer.report()

    after = FfsClient(local.meta_address)
    assert after.stat(protected.directory) == protected.directory_inode, "the protected directory changed"
    assert sorted_listing(after, protected.directory) == protected.listing, "the protected namespace changed"
    for path, data in protected.files.items():
        assert after.read_file(path) == data, f"{path} changed"

    # What the fuzzer wrote through the storage API may show in fsck, on the fuzzer's own inodes only.
    report = runner.check()
    touched = sorted({finding.inode for finding in report.findings} & protected.inode_ids)
    assert not touched, f"fsck finds damage on protected inodes {touched}: {report.to_json()}"
    for _ in range(repair_rounds_max):
        if not report.findings:
            break
        print(f"fsck after fuzzing (fuzzer's inodes only): {dict(report.counts())}; repairing", flush=True)
        # The fuzzer's chunks of inodes meta never made look like a younger meta store: say we know.
        plan = plan_repair(report.findings, runner.census(), delete_max=10_000, force_orphan_delete=True)
        runner.repair(plan, report)
        for finding, error in report.repair_failures:
            # e.g. a divergent chunk of an inode meta never made: no chunk size to repair it with;
            # removing the orphan copies (same round) ends the divergence.
            print(f"  repair of {finding.kind.value} {finding.inode}:{finding.index} on target "
                  f"{finding.target_id} failed: {error}", flush=True)
        report = runner.check()
    assert report.clean, f"fsck after {repair_rounds_max} repair rounds: {report.to_json()}"
    for path, data in protected.files.items():
        assert after.read_file(path) == data, f"{path} changed by the repair"


def run_mgmtd(make_cluster, request, examples: int, args: str = "") -> None:
    seed = seed_from_env()
    announce_seed(request, seed, env=replay_env(examples), args=args, examples=examples, deadline_s=deadline_s)
    local = make_cluster(storage_nodes=1, replicas=1, targets_per_node=1, heartbeat_timeout_ms=None)
    client = FfsClient(local.meta_address)
    routing = client.routing.routing_info()
    addresses = [node.address for node in routing.nodes] + ["127.0.0.1:1", "[::1]:1"]
    hints = {**routing_hints(routing), "id": [target.id for target in routing.targets],
             "address": addresses, "bulk_address": addresses}
    fuzzer = Fuzzer(channels_of(local, routing), lambda phase: hints, seed, examples)
    methods = chosen_methods(service_methods([mgmtd_pb2]), ("Mgmtd",))
    fuzzer.run(methods)
    fuzzer._probe("Meta", "after fuzzing mgmtd")
    print(f"fuzzed {len(methods)} methods with {fuzzer.calls} calls\n{fuzzer.summary()}", flush=True)
    assert local.pid("meta") is not None, "the meta process (which hosts mgmtd) died"
    assert not fuzzer.failures, fuzzer.report()
    assert FfsClient(local.meta_address).stat("/").type == types_pb2.INODE_DIRECTORY


def test_fuzz_meta_and_storage(make_cluster, request):
    run_meta_and_storage(make_cluster, request, fuzz_examples(examples_default))


def test_fuzz_mgmtd(make_cluster, request):
    run_mgmtd(make_cluster, request, fuzz_examples(examples_default))


@pytest.mark.slow
def test_fuzz_meta_and_storage_soak(make_cluster, request):
    run_meta_and_storage(make_cluster, request, fuzz_examples(examples_soak), args="-m slow")


@pytest.mark.slow
def test_fuzz_mgmtd_soak(make_cluster, request):
    run_mgmtd(make_cluster, request, fuzz_examples(examples_soak), args="-m slow")
