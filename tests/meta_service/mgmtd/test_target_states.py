"""The target-state function against the 3FS design-note table, over every input.

Goal: `generate_new_chain` follows the design-note table row by row and keeps
the chain-wide rules for ANY chain of 1-3 targets, reachable or not.
Method: the table is held here again as text (an independent copy of the
design notes, not imported from the code); every (public, local) combination
of every target of chains of 1, 2 and 3 targets (15 + 225 + 3375 chains) is
fed in and each result is checked against the table and the chain rules, and
repeated application with fixed local states must settle. Named scenarios
below spell out the transitions of the design notes one by one.
"""

from __future__ import annotations

import itertools

import pytest

from fireflyfs.meta_service.mgmtd.target_states import (
    ORDER_RANK, TRANSITIONS, LocalState, PublicState, TargetState, generate_new_chain, next_public_state)

P, L = PublicState, LocalState

# local | current public | next public ("a|b": a when the row's condition holds, else b).
# The offline/lastsrv row says "lastsrv" in the notes; we read "lastsrv" as "no other target
# stays serving" there too, so a chain never shows LASTSRV next to a SERVING target.
DESIGN_NOTE_TABLE = """
uptodate serving serving
uptodate syncing serving
uptodate lastsrv serving
uptodate waiting waiting
uptodate offline waiting
online   serving serving
online   lastsrv serving
online   offline waiting
online   waiting syncing|waiting
online   syncing syncing|waiting
offline  serving lastsrv|offline
offline  lastsrv lastsrv|offline
offline  syncing offline
offline  waiting offline
offline  offline offline
"""
_LOCAL = {"uptodate": L.UPTODATE, "online": L.ONLINE, "offline": L.OFFLINE}


def _table() -> dict[tuple[LocalState, PublicState], tuple[PublicState, ...]]:
    rows = {}
    for line in DESIGN_NOTE_TABLE.strip().splitlines():
        local, public, outcome = line.split()
        rows[(_LOCAL[local], P[public.upper()])] = tuple(P[o.upper()] for o in outcome.split("|"))
    return rows


TABLE = _table()
COMBINATIONS = [(public, local) for public in P for local in L]


def chains_of(length: int):
    for combo in itertools.product(COMBINATIONS, repeat=length):
        yield [TargetState(index + 1, public, local) for index, (public, local) in enumerate(combo)]


def test_code_table_is_the_design_note_table():
    assert len(TABLE) == 15 and set(TABLE) == set(TRANSITIONS)
    for key, outcomes in TABLE.items():
        rule = TRANSITIONS[key]
        assert (rule.next, rule.otherwise) == (outcomes + (None,))[:2], key


@pytest.mark.parametrize("local,public", [(l, p) for l in L for p in P])
def test_each_row_with_and_without_its_condition(local, public):
    outcomes = TABLE[(local, public)]
    results = {next_public_state(local, public, predecessor_serving=pred, other_serving=other)[0]
               for pred in (False, True) for other in (False, True)}
    assert results == set(outcomes)


def check_update(chain: list[TargetState]) -> None:
    """Every row and chain-wide rule for one input chain."""
    update = generate_new_chain(chain)
    before = {t.target_id: t for t in chain}
    after = {t.target_id: t for t in update.targets}
    new = [t.public for t in update.targets]
    label = [(t.public.name, t.local.name) for t in chain]
    assert sorted(after) == sorted(before), label
    assert all(after[i].local is before[i].local for i in before), label

    for target_id, old in before.items():
        state = after[target_id].public
        allowed = TABLE[(old.local, old.public)]
        assert state in allowed, (label, target_id, state)
        # Safety: a live serving target stays serving; nothing serves without having been synced.
        if old.public is P.SERVING and old.local is not L.OFFLINE:
            assert state is P.SERVING, label
        if state is P.SERVING:
            assert old.public in (P.SERVING, P.LASTSRV) or (old.public, old.local) == (P.SYNCING, L.UPTODATE)

    # Chain-wide rules: order classes, at most one syncing / lastsrv, lastsrv only without servers.
    assert [ORDER_RANK[s] for s in new] == sorted(ORDER_RANK[s] for s in new), (label, new)
    assert new.count(P.SYNCING) <= 1 and new.count(P.LASTSRV) <= 1, (label, new)
    if P.LASTSRV in new:
        assert P.SERVING not in new, (label, new)
    if any(t.public is P.SERVING for t in chain) and P.SERVING not in new:
        # every server failed at once: exactly one of them is the last server
        assert new.count(P.LASTSRV) == 1, (label, new)
    for t in update.targets:
        if t.public is P.LASTSRV:   # only a server, or the last server, can be the last server
            assert before[t.target_id].public in (P.SERVING, P.LASTSRV), label
    for index, t in enumerate(update.targets):
        if t.public is P.SYNCING:
            assert index > 0 and update.targets[index - 1].public is P.SERVING, (label, new)
    candidates = [t for t in chain if t.local is L.ONLINE and t.public in (P.WAITING, P.SYNCING)]
    if candidates and P.SERVING in new and P.LASTSRV not in new:
        assert new.count(P.SYNCING) == 1, (label, new)   # someone makes progress
    # Newly failed targets go to the very end, behind those already offline.
    newly_offline = [i for i, t in enumerate(update.targets)
                     if t.public is P.OFFLINE and before[t.target_id].public is not P.OFFLINE]
    assert newly_offline == list(range(len(chain) - len(newly_offline), len(chain))), (label, new)

    # The version moves exactly when the order or a public state changes; moves list the changes.
    changed = update.order != [t.target_id for t in chain] or any(
        after[i].public is not before[i].public for i in before)
    assert update.changed == changed, label
    assert {m.target_id for m in update.moves} == {i for i in before if after[i].public is not before[i].public}
    assert all(m.reason for m in update.moves)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_every_combination_follows_the_table_and_chain_rules(length):
    count = 0
    for chain in chains_of(length):
        check_update(chain)
        count += 1
    assert count == 15 ** length


@pytest.mark.parametrize("length", [1, 2, 3])
def test_fixed_local_states_settle_within_three_updates(length):
    for chain in chains_of(length):
        current = chain
        for _ in range(3):
            current = list(generate_new_chain(current).targets)
        final = generate_new_chain(current)
        assert not final.changed, [(t.public.name, t.local.name) for t in chain]
        check_update(current)


def states(update) -> list[tuple[int, str]]:
    return [(t.target_id, t.public.name) for t in update.targets]


def chain(*specs: tuple[int, PublicState, LocalState]) -> list[TargetState]:
    return [TargetState(*spec) for spec in specs]


def test_tail_failure_moves_nothing_but_the_tail_offline():
    update = generate_new_chain(chain((1, P.SERVING, L.UPTODATE), (2, P.SERVING, L.UPTODATE),
                                      (3, P.SERVING, L.OFFLINE)))
    assert states(update) == [(1, "SERVING"), (2, "SERVING"), (3, "OFFLINE")] and update.changed


def test_head_failure_moves_the_head_to_the_end():
    update = generate_new_chain(chain((1, P.SERVING, L.OFFLINE), (2, P.SERVING, L.UPTODATE),
                                      (3, P.OFFLINE, L.OFFLINE)))
    assert states(update) == [(2, "SERVING"), (3, "OFFLINE"), (1, "OFFLINE")]
    assert [(m.target_id, m.old.name, m.new.name) for m in update.moves] == [(1, "SERVING", "OFFLINE")]


def test_all_servers_fail_together_first_one_is_the_last_server():
    update = generate_new_chain(chain((1, P.SERVING, L.OFFLINE), (2, P.SERVING, L.OFFLINE),
                                      (3, P.SERVING, L.OFFLINE)))
    assert states(update) == [(1, "LASTSRV"), (2, "OFFLINE"), (3, "OFFLINE")]


def test_restarted_target_goes_waiting_syncing_serving():
    current = chain((1, P.SERVING, L.UPTODATE), (2, P.SERVING, L.UPTODATE), (3, P.OFFLINE, L.ONLINE))
    seen = []
    for local in (L.ONLINE, L.ONLINE, L.ONLINE, L.UPTODATE, L.UPTODATE):
        current[-1] = TargetState(3, current[-1].public, local)
        update = generate_new_chain(current)
        current = list(update.targets)
        seen.append((current[-1].public.name, update.changed))
    assert seen == [("WAITING", True), ("SYNCING", True), ("SYNCING", False), ("SERVING", True),
                    ("SERVING", False)]


def test_one_sync_at_a_time_and_none_behind_a_last_server():
    update = generate_new_chain(chain((1, P.SERVING, L.UPTODATE), (2, P.WAITING, L.ONLINE),
                                      (3, P.WAITING, L.ONLINE)))
    assert states(update) == [(1, "SERVING"), (2, "SYNCING"), (3, "WAITING")]
    update = generate_new_chain(chain((1, P.LASTSRV, L.OFFLINE), (2, P.WAITING, L.ONLINE),
                                      (3, P.OFFLINE, L.ONLINE)))
    assert states(update) == [(1, "LASTSRV"), (2, "WAITING"), (3, "WAITING")]
    # The last server returns: it serves at once (it holds every acknowledged write), then others sync.
    update = generate_new_chain(chain((1, P.LASTSRV, L.ONLINE), (2, P.WAITING, L.ONLINE)))
    assert states(update) == [(1, "SERVING"), (2, "SYNCING")]


def test_rejects_malformed_chains():
    with pytest.raises(ValueError):
        generate_new_chain([])
    with pytest.raises(ValueError):
        generate_new_chain(chain((1, P.SERVING, L.UPTODATE), (1, P.SERVING, L.UPTODATE)))
