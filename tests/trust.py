"""Credentials for tests that talk to servers by hand, as each kind of caller would.

In-process servers (a MetaServer built in the test) adopt the session's admin
token (``ADMIN_TOKEN``) through their admin_token_file; node keys come from
the server's cluster secret, as ``ffs admin node key`` would give them.
"""

from __future__ import annotations

import os

from fireflyfs.common import auth
from fireflyfs.common.rpc import make_channel
from fireflyfs.deploy.local_cluster import ADMIN_TOKEN_ENV

ADMIN_TOKEN = os.environ[ADMIN_TOKEN_ENV]        # set by tests/conftest.py for the session


def tls_files():
    """The session's TLS files for 127.0.0.1 (tests/conftest.py made them): for in-process and
    hand-started servers."""
    from tests.conftest import SESSION_TLS

    return SESSION_TLS


def meta_tls_config() -> dict:
    files = tls_files()
    return {"tls_cert": files.cert, "tls_key": files.key, "tls_ca": files.ca}


def tls_args() -> list[str]:
    files = tls_files()
    return ["--tls-cert", files.cert, "--tls-key", files.key, "--tls-ca", files.ca]


def admin_token_file(directory) -> str:
    """A 0600 file holding the session admin token, for MetaConfig(admin_token_file=...)."""
    path = os.path.join(str(directory), "admin.token")
    if not os.path.exists(path):
        auth.write_token_file(path, ADMIN_TOKEN)
    return path


def node_key_file(directory, cluster_secret: bytes, node_id: int) -> str:
    path = os.path.join(str(directory), f"node-{node_id}.key")
    auth.write_token_file(path, auth.node_token(cluster_secret, node_id))
    return path


def admin_channel(address: str):
    return make_channel(address, token=ADMIN_TOKEN)


def node_channel(address: str, cluster_secret: bytes, node_id: int):
    return make_channel(address, token=auth.node_token(cluster_secret, node_id))


def node_channel_via(meta_address: str, node_id: int):
    """A channel carrying node node_id's key, asked of the meta server with the admin token."""
    from fireflyfs.proto import meta_pb2, meta_pb2_grpc

    with admin_channel(meta_address) as channel:
        token = meta_pb2_grpc.MetaStub(channel).NodeKey(meta_pb2.NodeKeyRequest(node_id=node_id), timeout=10).token
    return make_channel(meta_address, token=token)
