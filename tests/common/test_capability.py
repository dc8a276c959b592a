"""Chunk capabilities (common/capability.py): signed by meta, checked by storage, pure logic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fireflyfs.common import capability
from fireflyfs.common.errors import PermissionDenied, Unavailable

SECRET = b"s" * 32
NOW = 1_700_000_000_000
HOUR = 3_600_000


def verifier(now_ms: int = NOW) -> capability.Verifier:
    checker = capability.Verifier()
    checker.set_keys(capability.keys_around(SECRET, now_ms))
    return checker


def test_a_capability_grants_its_inode_and_access_until_it_expires():
    read = capability.sign(SECRET, 42, capability.READ, NOW)
    write = capability.sign(SECRET, 42, capability.WRITE, NOW)
    assert len(read) == capability.SIZE
    checker = verifier()
    checker.require([read], [42], capability.READ, NOW)
    checker.require([write], [42, 42], capability.WRITE, NOW + HOUR)      # up to its expiry, inclusive
    with pytest.raises(PermissionDenied, match="grants read, not write"):
        checker.require([read], [42], capability.WRITE, NOW)
    with pytest.raises(PermissionDenied, match="no capability for inode 43"):
        checker.require([read], [42, 43], capability.READ, NOW)
    with pytest.raises(PermissionDenied, match="expired"):
        checker.require([read], [42], capability.READ, NOW + HOUR + 1)
    with pytest.raises(PermissionDenied, match="no capability"):
        checker.require([], [42], capability.READ, NOW)


def test_keys_rotate_and_storage_holds_three_epochs():
    old = capability.sign(SECRET, 7, capability.READ, NOW - 3 * HOUR)
    with pytest.raises(PermissionDenied, match="key epoch"):
        verifier().require([old], [7], capability.READ, NOW - 3 * HOUR)
    recent = capability.sign(SECRET, 7, capability.READ, NOW - HOUR)
    verifier().require([recent], [7], capability.READ, NOW - HOUR)       # the previous epoch's key is held
    other_cluster = capability.sign(b"o" * 32, 7, capability.READ, NOW)
    with pytest.raises(PermissionDenied, match="signature"):
        verifier().require([other_cluster], [7], capability.READ, NOW)
    with pytest.raises(Unavailable, match="no capability keys yet"):
        capability.Verifier().require([recent], [7], capability.READ, NOW)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, capability.SIZE - 1), flip=st.integers(1, 255))
def test_any_flipped_byte_is_refused(position, flip):
    blob = bytearray(capability.sign(SECRET, 99, capability.WRITE, NOW))
    blob[position] ^= flip
    with pytest.raises(PermissionDenied):
        verifier().require([bytes(blob)], [99], capability.READ, NOW)


def test_meta_recognizes_its_own_capabilities_expired_or_not():
    blob = capability.sign(SECRET, 5, capability.READ, NOW - 10 * HOUR)
    assert capability.issued(SECRET, blob).inode_id == 5                 # long expired: still its own
    with pytest.raises(PermissionDenied):
        capability.issued(b"o" * 32, blob)
    with pytest.raises(PermissionDenied):
        capability.issued(SECRET, b"")
