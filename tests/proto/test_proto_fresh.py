"""The committed *_pb2 modules must be exactly what proto/generate.py produces.

Method: regenerate into a tmp dir with the pinned grpcio-tools and compare
byte for byte, naming every stale or missing file and the fix.
"""

from __future__ import annotations

import importlib.util
import pathlib


PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "proto"


def _load_generate():
    spec = importlib.util.spec_from_file_location("ffs_proto_generate", PROTO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def test_generated_modules_are_fresh(tmp_path):
    written = _load_generate()(tmp_path)
    assert written, "generate() produced no files"
    names = {path.name for path in written}
    for proto in PROTO_DIR.glob("*.proto"):
        assert f"{proto.stem}_pb2.py" in names, f"no module generated for {proto.name}"
    stale = [name for name in sorted(names)
             if not (PROTO_DIR / name).exists()
             or (PROTO_DIR / name).read_bytes() != (tmp_path / name).read_bytes()]
    assert not stale, (f"stale or missing generated files: {', '.join(stale)}; "
                       "run `python proto/generate.py` and commit the result")


def test_no_orphan_generated_modules():
    """A generated module without its .proto is left over from a removed contract."""
    protos = {p.stem for p in PROTO_DIR.glob("*.proto")}
    orphans = [p.name for p in PROTO_DIR.glob("*_pb2*.py*")
               if p.name.split("_pb2")[0] not in protos]
    assert not orphans, f"generated modules without a .proto: {orphans}"
