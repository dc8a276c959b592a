"""The committed *_pb2 modules must be exactly what proto/generate.py produces.

Method: regenerate into a tmp dir with the pinned grpcio-tools and compare
byte for byte, naming every stale or missing file and the fix.
"""

from __future__ import annotations

import importlib.util
import pathlib


PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "proto"
PROTO_SUBDIRS = ("", "etcd")   # ours, and the vendored etcd v3 API (proto/etcd/README.md)


def _protos() -> list[pathlib.Path]:
    """Every .proto, relative to PROTO_DIR."""
    return [(PROTO_DIR / sub / p.name).relative_to(PROTO_DIR)
            for sub in PROTO_SUBDIRS for p in sorted((PROTO_DIR / sub).glob("*.proto"))]


def _load_generate():
    spec = importlib.util.spec_from_file_location("ffs_proto_generate", PROTO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def test_generated_modules_are_fresh(tmp_path):
    written = _load_generate()(tmp_path)
    assert written, "generate() produced no files"
    names = {str(path.relative_to(tmp_path)) for path in written}
    for proto in _protos():
        module = str(proto.with_name(f"{proto.stem}_pb2.py"))
        assert module in names, f"no module generated for {proto}"
    stale = [name for name in sorted(names)
             if not (PROTO_DIR / name).exists()
             or (PROTO_DIR / name).read_bytes() != (tmp_path / name).read_bytes()]
    assert not stale, (f"stale or missing generated files: {', '.join(stale)}; "
                       "run `python proto/generate.py` and commit the result")


def test_no_orphan_generated_modules():
    """A generated module without its .proto is left over from a removed contract."""
    protos = {str(p.with_suffix("")) for p in _protos()}
    orphans = [str(p.relative_to(PROTO_DIR)) for sub in PROTO_SUBDIRS
               for p in (PROTO_DIR / sub).glob("*_pb2*.py*")
               if str(p.relative_to(PROTO_DIR)).split("_pb2")[0] not in protos]
    assert not orphans, f"generated modules without a .proto: {orphans}"


def test_etcd_protos_are_stripped_of_go_annotations():
    """The vendored etcd protos keep etcd's messages but none of its Go/gateway options."""
    for proto in (PROTO_DIR / "etcd").glob("*.proto"):
        text = proto.read_text()
        assert "gogoproto" not in text and "google.api" not in text, proto.name
        assert text.startswith("// From etcd v3.4.23 "), f"{proto.name} does not say where it came from"
    from fireflyfs.proto.etcd import rpc_pb2
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"   # the gRPC service names etcd expects
    assert rpc_pb2.DESCRIPTOR.services_by_name["KV"].full_name == "etcdserverpb.KV"
