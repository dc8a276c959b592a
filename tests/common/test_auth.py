"""Tokens, token files and the caller of an RPC (common/auth.py)."""

from __future__ import annotations

import os
import threading

import pytest

from fireflyfs.common import auth
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import InvalidArgument, PermissionDenied, Unauthenticated


def test_user_tokens_parse_back_and_store_only_a_hash():
    token, stored = auth.new_user_token(42)
    parsed = auth.parse_token(token)
    assert (parsed.kind, parsed.id) == (auth.USER_TOKEN_PREFIX, 42)
    assert auth.secret_hash(parsed.secret) == stored
    assert parsed.secret not in stored and token.encode() not in stored
    assert auth.new_user_token(42)[0] != token          # fresh randomness every time


def test_node_keys_come_only_from_the_cluster_secret():
    secret, other = auth.new_cluster_secret(), auth.new_cluster_secret()
    token = auth.node_token(secret, 7)
    parsed = auth.parse_token(token)
    assert (parsed.kind, parsed.id) == (auth.NODE_TOKEN_PREFIX, 7)
    assert parsed.secret == auth.node_key(secret, 7)
    assert auth.node_key(secret, 8) != parsed.secret and auth.node_key(other, 7) != parsed.secret
    assert auth.secret_hash(parsed.secret) == auth.node_key_hash(secret, 7)


@pytest.mark.parametrize("token", ["", "garbage", "ffsu.x.AAAA", "ffsx.1." + "A" * 43, "ffsu.1.AAAA",
                                   "ffsu.1.!!!!", "ffsu.1"])
def test_malformed_tokens_are_unauthenticated(token):
    with pytest.raises(Unauthenticated):
        auth.parse_token(token)


def test_bearer_metadata():
    assert auth.token_of_metadata([("x", "y")]) is None
    assert auth.token_of_metadata([("authorization", "Bearer abc")]) == "abc"
    with pytest.raises(Unauthenticated):
        auth.token_of_metadata([("authorization", "Basic abc")])


def test_token_files_readable_by_others_are_refused(tmp_path):
    path = tmp_path / "token"
    auth.write_token_file(str(path), "ffsu.1.abc")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert auth.read_token_file(str(path)) == "ffsu.1.abc"
    os.chmod(path, 0o644)
    with pytest.raises(InvalidArgument, match="readable by others"):
        auth.read_token_file(str(path))


def test_client_token_precedence(tmp_path, monkeypatch):
    path = tmp_path / "token"
    auth.write_token_file(str(path), "from-file")
    env = {auth.TOKEN_FILE_ENV: str(path)}
    assert auth.client_token(None, env) == "from-file"
    assert auth.client_token(None, {**env, auth.TOKEN_ENV: "from-env"}) == "from-env"
    assert auth.client_token("explicit", {**env, auth.TOKEN_ENV: "from-env"}) == "explicit"
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    assert auth.client_token(None, {}) is None


def test_the_caller_is_per_thread_and_superuser_outside_rpcs():
    alice = Principal(name="alice", uid=1000, gids=(1000,))
    seen = []
    with auth.acting_as(alice):
        assert auth.caller() is alice
        thread = threading.Thread(target=lambda: seen.append(auth.caller()))
        thread.start()
        thread.join()
    assert seen == [auth.SUPERUSER]
    assert auth.caller() is auth.SUPERUSER


def test_admin_and_node_requirements():
    alice = Principal(name="alice", uid=1000, gids=(1000,))
    node2 = Principal(name="node-2", node_id=2)
    with auth.acting_as(alice):
        with pytest.raises(PermissionDenied, match="for admins.*alice"):
            auth.require_admin("adding a user")
        with pytest.raises(PermissionDenied, match="node 1"):
            auth.require_node(1, "registering")
    with auth.acting_as(node2):
        with pytest.raises(PermissionDenied, match="node 1's key|that node's key"):
            auth.require_node(1, "registering")
        assert auth.require_node(2, "registering") is node2
    admin = Principal(name="root", admin=True)
    with auth.acting_as(admin):
        with pytest.raises(PermissionDenied):       # not even an admin speaks for a node
            auth.require_node(1, "registering")
    assert auth.require_node(1, "registering") is auth.SUPERUSER   # security off / in-process
