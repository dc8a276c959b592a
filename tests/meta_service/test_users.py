"""Users, tokens and meta's authentication (meta_service/users.py), on every engine."""

from __future__ import annotations

import pytest

from fireflyfs.common import auth
from fireflyfs.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from fireflyfs.meta_service.cluster_secret import cluster_secret
from fireflyfs.meta_service.users import MetaAuthenticator, Users, bootstrap_admin


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_add_list_rotate_remove(store):
    users = Users(store)
    alice, token = users.add("alice", 1)
    bob, _ = users.add("bob", 2, uid=2000, gids=[2000, 50], admin=True)
    assert (alice.uid, list(alice.gids), alice.admin) == (1000, [1000], False)
    assert (bob.uid, list(bob.gids), bob.admin) == (2000, [2000, 50], True)
    assert alice.token_hash == b"" and bob.token_hash == b""     # replies never carry the hash
    assert [u.name for u in users.list()] == ["alice", "bob"]
    assert all(u.token_hash == b"" for u in users.list())
    stored = users.get(alice.id)
    assert stored.token_hash == auth.secret_hash(auth.parse_token(token).secret)
    assert token.encode() not in stored.SerializeToString()
    with pytest.raises(AlreadyExists):
        users.add("alice", 3)
    with pytest.raises(AlreadyExists, match="uid 2000"):
        users.add("carol", 3, uid=2000)
    with pytest.raises(InvalidArgument):
        users.add("no spaces", 3)
    _, rotated = users.rotate("alice")
    assert rotated != token
    users.remove("alice")
    assert [u.name for u in users.list()] == ["bob"]
    with pytest.raises(NotFound):
        users.remove("alice")
    with pytest.raises(InvalidArgument, match="last admin"):
        users.remove("bob")


def test_authenticator_accepts_users_and_nodes_and_forgets_removed_ones(store):
    users = Users(store)
    secret = cluster_secret(store)
    assert cluster_secret(store) == secret                      # made once, then kept
    clock = Clock()
    check = MetaAuthenticator(users, secret, cache_s=2.0, clock=clock)
    alice, token = users.add("alice", 1, gids=[1000, 7])
    principal = check(token)
    assert (principal.name, principal.uid, principal.gids, principal.admin) == ("alice", 1000, (1000, 7), False)
    node = check(auth.node_token(secret, 3))
    assert node.node_id == 3 and node.superuser
    with pytest.raises(Unauthenticated, match="no token"):
        check(None)
    with pytest.raises(Unauthenticated, match="not this cluster's"):
        check(auth.node_token(auth.new_cluster_secret(), 3))
    with pytest.raises(Unauthenticated):
        check(auth.new_user_token(alice.id)[0])                  # right id, wrong secret
    users.remove("alice")
    assert check(token).name == "alice"                         # cached for cache_s...
    clock.now = 2.5
    with pytest.raises(Unauthenticated, match="removed"):        # ...then refused
        check(token)


def test_bootstrap_makes_one_admin_or_adopts_a_provisioned_token(store, tmp_path):
    users = Users(store)
    path = tmp_path / "admin.token"
    assert bootstrap_admin(users, str(path), 1)
    token = auth.read_token_file(str(path))                     # 0600, or it would be refused
    assert MetaAuthenticator(users, b"s" * 32)(token).admin
    assert not bootstrap_admin(users, str(tmp_path / "again.token"), 2)   # only while there are no users
    assert not (tmp_path / "again.token").exists()


def test_bootstrap_adopts_a_provisioned_token(store, tmp_path):
    users = Users(store)
    provisioned, _ = auth.new_user_token(123456789)
    path = tmp_path / "admin.token"
    auth.write_token_file(str(path), provisioned)
    assert bootstrap_admin(users, str(path), 1)
    assert auth.read_token_file(str(path)) == provisioned
    principal = MetaAuthenticator(users, b"s" * 32)(provisioned)
    assert principal.admin and principal.uid == 0
