"""Regenerate the Python modules for the .proto contracts.

The protos import each other as "fireflyfs/proto/NAME.proto"; protoc's virtual
path mapping (``-Ifireflyfs/proto=<dir>``) makes the generated modules import
``fireflyfs.proto.types_pb2`` so they work as installed package modules.
Run ``python proto/generate.py``; ``tests/proto/test_proto_fresh.py`` fails when the
committed modules differ from what this produces. The vendored etcd v3 API protos in
``etcd/`` (see etcd/README.md) are built the same way, into ``fireflyfs.proto.etcd``.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

PROTO_DIR = pathlib.Path(__file__).resolve().parent
SUBDIRS = ("", "etcd")   # proto folders, relative to PROTO_DIR; output mirrors them


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Generate every module into out_dir (subfolders as SUBDIRS); return the written files."""
    from grpc_tools import protoc
    import grpc_tools

    protos = [pathlib.PurePosixPath(sub, p.name)
              for sub in SUBDIRS for p in sorted((PROTO_DIR / sub).glob("*.proto"))]
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-Ifireflyfs/proto={PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [f"fireflyfs/proto/{p}" for p in protos]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        written = []
        for sub in SUBDIRS:
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
            for produced in sorted((pathlib.Path(tmp) / "fireflyfs" / "proto" / sub).glob("*_pb2*")):
                target = out_dir / sub / produced.name
                shutil.copyfile(produced, target)
                written.append(target)
        return written


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR
    for path in generate(out):
        print(path)
