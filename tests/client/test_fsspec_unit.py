"""The fsspec face without a server: URLs, canonical paths, registration, pickling.

Method: construct filesystems (connections are lazy, so no server is needed)
and check the contracts fsspec relies on.
"""

import json
import pickle
import subprocess
import sys

import fsspec
import pytest

from fireflyfs.client.client import FfsClient
from fireflyfs.client.fsspec_fs import FireflyFileSystem
from tests import trust


@pytest.mark.parametrize("given, canonical", [
    ("ffs://127.0.0.1:9000/a/b", "/a/b"),
    ("ffs://127.0.0.1:9000/a/b/", "/a/b"),
    ("3fs://host:1/a", "/a"),
    ("ffs://127.0.0.1:9000", "/"),
    ("ffs://127.0.0.1:9000/", "/"),
    ("/a//b/./c/../d", "/a/b/d"),
    ("a/b", "/a/b"),
    ("", "/"),
    ("/", "/"),
    ("ffs::/x/y", "/x/y"),
])
def test_strip_protocol_gives_canonical_paths(given, canonical):
    assert FireflyFileSystem._strip_protocol(given) == canonical


def test_strip_protocol_lists_and_invalid_paths():
    assert FireflyFileSystem._strip_protocol(["ffs://h:1/a/", "b"]) == ["/a", "/b"]
    with pytest.raises(ValueError):
        FireflyFileSystem._strip_protocol("/../escape")
    with pytest.raises(ValueError):
        FireflyFileSystem._strip_protocol("/a\x00b")


def test_kwargs_from_urls_and_unstrip():
    assert FireflyFileSystem._get_kwargs_from_urls("ffs://10.0.0.1:9000/x") == {
        "host": "10.0.0.1", "port": 9000}
    assert FireflyFileSystem._get_kwargs_from_urls("/x") == {}
    fs = FireflyFileSystem(host="127.0.0.1", port=9123, skip_instance_cache=True)
    assert fs.unstrip_protocol("/a/b") == "ffs://127.0.0.1:9123/a/b"
    assert fs.unstrip_protocol("ffs://x:1/a") == "ffs://x:1/a"


def test_url_to_fs_reaches_host_and_port():
    fs, path = fsspec.core.url_to_fs("ffs://127.0.0.1:9124/dir/file.bin")
    assert isinstance(fs, FireflyFileSystem)
    assert (fs.host, fs.port, path) == ("127.0.0.1", 9124, "/dir/file.bin")
    assert fs.protocol == ("ffs", "3fs")
    assert fs.dircache.use_listings_cache is False


def test_missing_port_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("FFS_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="port"):
        FireflyFileSystem(host="127.0.0.1", skip_instance_cache=True)
    monkeypatch.setenv("FFS_ADDRESS", "127.0.0.1:9555")
    assert FireflyFileSystem(skip_instance_cache=True).port == 9555


def test_pickle_json_round_trip_without_a_server():
    fs = FireflyFileSystem(host="127.0.0.1", port=9125)
    clone = pickle.loads(pickle.dumps(fs))
    assert (clone.host, clone.port) == (fs.host, fs.port)
    restored = fsspec.AbstractFileSystem.from_json(fs.to_json())
    assert isinstance(restored, FireflyFileSystem) and restored.port == 9125
    assert json.loads(fs.to_json())["port"] == 9125
    ca = trust.tls_files().ca
    client = pickle.loads(pickle.dumps(FfsClient("127.0.0.1:9125", umask=0o077, tls_ca=ca)))
    # A spawned DataLoader worker gets the same address, umask and CA as the parent.
    assert (client.address, client.umask, client.tls_ca) == ("127.0.0.1:9125", 0o077, ca)


def test_entry_point_registers_ffs_in_a_fresh_interpreter():
    code = ("import fsspec; fs, p = fsspec.core.url_to_fs('ffs://127.0.0.1:9/a'); "
            "print(type(fs).__module__, fs.port, p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["fireflyfs.client.fsspec_fs", "9", "/a"]


def test_clamp_follows_python_slicing():
    clamp = FireflyFileSystem._clamp
    assert clamp(None, None, 10) == (0, 10)
    assert clamp(-3, None, 10) == (7, 10)
    assert clamp(2, -2, 10) == (2, 8)
    assert clamp(5, 100, 10) == (5, 10)
    assert clamp(8, 3, 10) == (8, 8)
    assert clamp(-100, None, 10) == (0, 10)
