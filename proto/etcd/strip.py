"""Copy etcd's v3 API .proto files here, without the Go-only annotations.

etcd's protos import gogoproto (Go code generation options) and
google/api/annotations (the HTTP gateway); neither means anything to the
Python stubs, and vendoring both dependency trees would triple what we carry.
This script drops those imports and options and rewrites etcd's import paths to
``fireflyfs/proto/etcd/NAME.proto`` so proto/generate.py builds
``fireflyfs.proto.etcd.NAME_pb2``. Messages, fields, numbers and services are
untouched, so the wire format is etcd's.

Usage: ``python proto/etcd/strip.py ETCD_CHECKOUT`` with etcd checked out at
``ETCD_TAG`` (paths below are that tag's layout).
"""

from __future__ import annotations

import pathlib
import re
import sys

ETCD_TAG = "v3.4.23"
# file kept here -> path in the etcd repository at ETCD_TAG
UPSTREAM_PATHS = {
    "rpc.proto": "etcdserver/etcdserverpb/rpc.proto",
    "kv.proto": "mvcc/mvccpb/kv.proto",
    "auth.proto": "auth/authpb/auth.proto",
    "v3election.proto": "etcdserver/api/v3election/v3electionpb/v3election.proto",
    "v3lock.proto": "etcdserver/api/v3lock/v3lockpb/v3lock.proto",
}
HERE = pathlib.Path(__file__).resolve().parent

_DROPPED = [
    re.compile(r'^import "(gogoproto/gogo|google/api/annotations)\.proto";\n', re.M),
    re.compile(r"^// for grpc-gateway\n", re.M),
    re.compile(r"^option \(gogoproto\.[a-z_]+\) = \w+;\n", re.M),
    re.compile(r"\s*\[\(gogoproto\.[a-z_]+\) = [^\]]+\]"),                   # field options
]
_HTTP_OPTION = re.compile(r"\n\s*option \(google\.api\.http\) = \{")
_ETCD_IMPORT = re.compile(r'^import "etcd/[\w/]+/(\w+\.proto)";', re.M)


def _drop_http_options(text: str) -> str:
    """Remove each ``option (google.api.http) = {...};``; its braces nest, so count them."""
    while match := _HTTP_OPTION.search(text):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if not text.startswith(";", end):
            raise ValueError(f"unexpected text after an HTTP option at offset {end}")
        text = text[:match.start()] + text[end + 1:]
    return text


def strip(text: str) -> str:
    """The proto without gogoproto/google.api annotations, importing our copies."""
    for pattern in _DROPPED:
        text = pattern.sub("", text)
    text = _drop_http_options(text)
    text = re.sub(r"\{\n\s*\}", "{}", text)          # rpc bodies left empty
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = _ETCD_IMPORT.sub(r'import "fireflyfs/proto/etcd/\1";', text)
    leftover = re.findall(r"gogoproto|google\.api", text)
    if leftover:
        raise ValueError(f"annotations left after stripping: {sorted(set(leftover))}")
    return text


def main(checkout: pathlib.Path) -> None:
    for name, upstream in UPSTREAM_PATHS.items():
        source = (checkout / upstream).read_text()
        (HERE / name).write_text(f"// From etcd {ETCD_TAG} {upstream}, stripped by strip.py.\n"
                                 + strip(source))
        print(HERE / name)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
