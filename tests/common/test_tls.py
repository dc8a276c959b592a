"""The cluster CA and service certificates (common/tls.py), checked by real TLS handshakes."""

from __future__ import annotations

import os
import socket
import ssl
import threading

import pytest

from fireflyfs.common import tls


def test_certificates_are_made_once_with_private_keys(tmp_path):
    ca_dir, out = str(tmp_path / "ca"), str(tmp_path / "certs")
    files = tls.issue(ca_dir, out, "storage-1", ["127.0.0.1", "localhost"])
    for key in (files.key, os.path.join(ca_dir, "ca.key")):
        assert os.stat(key).st_mode & 0o777 == 0o600
    again = tls.issue(ca_dir, out, "storage-1", ["127.0.0.1"])
    assert open(again.cert, "rb").read() == open(files.cert, "rb").read()      # reused, not remade
    assert tls.ensure_ca(ca_dir)[0] == files.ca


def handshake(server_files: tls.TlsFiles, client_ca: str, host: str = "127.0.0.1") -> bytes:
    """One TLS connection on loopback: the bytes the server sent, or the client's SSLError."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    context = tls.server_context(server_files)

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as wrapped:
                wrapped.sendall(b"hello over tls")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with tls.client_context(client_ca).wrap_socket(raw, server_hostname=host) as sock:
                return sock.recv(100)
    finally:
        thread.join(5)
        listener.close()


def test_a_client_trusting_the_cluster_ca_connects_and_others_are_refused(tmp_path):
    files = tls.issue(str(tmp_path / "ca"), str(tmp_path / "certs"), "meta", ["127.0.0.1"])
    assert handshake(files, files.ca) == b"hello over tls"
    other_ca, _ = tls.ensure_ca(str(tmp_path / "other-ca"))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, other_ca)                          # a CA that did not sign it
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, files.ca, host="10.9.9.9")         # an address the certificate does not name
