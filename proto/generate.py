"""Regenerate the Python modules for the .proto contracts.

The protos import each other as "fireflyfs/proto/NAME.proto"; protoc's virtual
path mapping (``-Ifireflyfs/proto=<dir>``) makes the generated modules import
``fireflyfs.proto.types_pb2`` so they work as installed package modules.
Run ``python proto/generate.py``; ``tests/proto/test_proto_fresh.py`` fails when the
committed modules differ from what this produces.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

PROTO_DIR = pathlib.Path(__file__).resolve().parent


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Generate every module into out_dir; return the written files."""
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-Ifireflyfs/proto={PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [f"fireflyfs/proto/{p.name}" for p in protos]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        written = []
        for produced in sorted((pathlib.Path(tmp) / "fireflyfs" / "proto").iterdir()):
            target = out_dir / produced.name
            shutil.copyfile(produced, target)
            written.append(target)
        return written


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR
    for path in generate(out):
        print(path)
