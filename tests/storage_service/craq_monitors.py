"""Invariant monitors over a CRAQ simulation's event log, named after 3FS's P specs.

Each monitor reads ``Sim.events`` (and, for end states, the replicas' stores)
and raises AssertionError naming the monitor and the offending events. They
observe; they never drive the simulation.
"""

from __future__ import annotations

from fireflyfs.proto import types_pb2

from .craq_sim import Sim


def write_complete(sim: Sim) -> None:
    """WriteComplete: every write was acknowledged in the end, and the last acknowledged write of
    each slot is what every serving replica holds there."""
    last_ack: dict[tuple[bytes, int], bytes] = {}
    for event in sim.events:
        if event[1] == "ack":
            _, _, writer, key, slot, data, _version = event
            last_ack[(key, slot)] = data
    for writer in sim.writers:
        assert writer.done(), f"WriteComplete: writer {writer.name} still has write #{writer.index} pending"
    serving = [sim.replicas[t] for t in sim.mgmtd.targets if sim.mgmtd.states[t] == types_pb2.SERVING]
    assert serving, "WriteComplete: no serving replica left"
    for (key, slot), data in last_ack.items():
        start = slot * sim.slot_bytes
        for replica in serving:
            chunk = replica.store.chunks.get(key)
            held = chunk.content[start:start + len(data)] if chunk else b""
            assert held == data, (f"WriteComplete: {replica.name} holds {held!r} at {key!r} slot {slot}, "
                                  f"the last acknowledged write was {data!r}")


def monotone_increasing_version_number(sim: Sim) -> None:
    """MonotoneIncreasingVersionNumber: on each replica a chunk's commits never go back (an equal
    version recommits the same bytes), and an update that is not a full replace stages exactly
    the next version (no replica skips one)."""
    last: dict[tuple[str, bytes], tuple[int, bytes]] = {}
    for event in sim.events:
        kind = event[1]
        if kind == "remove":
            last.pop((event[2], event[3]), None)
        elif kind == "stage":
            _, _, replica, key, version, full, before, _after, _content = event
            if full:
                continue
            expected = {before.update_version} if before and before.pending else \
                {(before.commit_version if before else 0) + 1}
            assert version in expected, (f"MonotoneIncreasingVersionNumber: {replica} staged {key!r} "
                                         f"v{version} over {before} (skips a version)")
        elif kind == "commit":
            _, step, replica, key, version, content = event
            previous = last.get((replica, key))
            if previous is not None:
                assert version > previous[0] or (version == previous[0] and content == previous[1]), (
                    f"MonotoneIncreasingVersionNumber: step {step}: {replica} committed {key!r} v{version} "
                    f"after v{previous[0]}")
            last[(replica, key)] = (version, content)


def version_content_unique(sim: Sim) -> None:
    """A committed version of a chunk means the same bytes on every replica that commits it."""
    seen: dict[tuple[bytes, int], tuple[str, bytes]] = {}
    for event in sim.events:
        if event[1] == "commit":
            _, step, replica, key, version, content = event
            first = seen.setdefault((key, version), (replica, content))
            assert first[1] == content, (f"VersionContentUnique: step {step}: {replica} committed {key!r} "
                                         f"v{version} with other bytes than {first[0]}")


def all_replicas_on_chain_updated(sim: Sim, all_serving: bool) -> None:
    """AllReplicasOnChainUpdated: after the quiet phase every serving replica holds the same chunks,
    byte-identical, committed at the same version, nothing pending; AllReplicasInServingState
    when all_serving (every target came back)."""
    serving = [t for t in sim.mgmtd.targets if sim.mgmtd.states[t] == types_pb2.SERVING]
    if all_serving:
        assert len(serving) == len(sim.replicas), (
            f"AllReplicasInServingState: chain {sim.mgmtd.view()} after the quiet phase")
    reference = sim.replicas[serving[0]]
    for target in serving:
        store = sim.replicas[target].store
        for key, chunk in store.chunks.items():
            assert chunk.commit_version == chunk.update_version, (
                f"AllReplicasOnChainUpdated: r{target} {key!r} still pending {chunk}")
        mine = {k: (c.commit_version, c.content) for k, c in store.chunks.items()}
        theirs = {k: (c.commit_version, c.content) for k, c in reference.store.chunks.items()}
        assert mine == theirs, (f"AllReplicasOnChainUpdated: r{target} differs from {reference.name}: "
                                f"{sorted(mine.items())} vs {sorted(theirs.items())}")


def check_all(sim: Sim, all_serving: bool) -> None:
    write_complete(sim)
    monotone_increasing_version_number(sim)
    version_content_unique(sim)
    all_replicas_on_chain_updated(sim, all_serving)
