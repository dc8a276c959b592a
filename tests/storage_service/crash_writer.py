"""Child process for the crash test: writes to a ChunkEngine in a loop until killed.

Usage: python crash_writer.py TARGET_DIR LOG_PATH SEED

For each operation (overwrite inside the chunk, append at the end, append after
a gap, truncate) it appends to LOG_PATH, fsync'd:

    I <key-hex> <version> <length> <crc32c of the whole chunk>   before the engine call
    A <key-hex> <version> <length> <crc32c of the whole chunk>   after it returned (acknowledged)

so after a SIGKILL the checker knows, per chunk, the last acknowledged state and
the one state that may have committed without an acknowledgement. The model of
each chunk's bytes starts from what the engine holds at startup (the checker
has verified it before restarting us).
"""

from __future__ import annotations

import os
import random
import sys

import crc32c

from fireflyfs.common.limits import KiB
from fireflyfs.storage_service.chunk_engine import ChunkEngine
from fireflyfs.storage_service.chunk_meta import chunk_key

BLOCK_BYTES = 4 * KiB
CHUNK_BYTES = 64 * KiB
KEYS = [chunk_key(77, index) for index in range(3)]


def main(target_dir: str, log_path: str, seed: int) -> None:
    rng = random.Random(seed)
    engine = ChunkEngine(target_dir, block_size=BLOCK_BYTES)
    models = {key: bytearray(engine.read(key, 0, CHUNK_BYTES)[0]) for key in KEYS}
    versions = {key: (meta.commit_version if (meta := engine.get_meta(key)) else 0) for key in KEYS}
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(kind: str, key: bytes, version: int, model: bytearray) -> None:
        os.write(log_fd, f"{kind} {key.hex()} {version} {len(model)} {crc32c.crc32c(model)}\n".encode())
        os.fsync(log_fd)

    while True:
        key = rng.choice(KEYS)
        model = bytearray(models[key])
        choice = rng.random()
        if choice < 0.1 and model:
            length = rng.randrange(0, len(model))
            del model[length:]
            operation = ("truncate", length)
        else:
            if choice < 0.55 and model:
                offset = rng.randrange(0, len(model))                          # overwrite (COW)
            elif choice < 0.8 or not model:
                offset = len(model)                                            # append in place
            else:
                offset = len(model) + rng.randrange(1, 2 * BLOCK_BYTES)
            offset = min(offset, CHUNK_BYTES - 1)  # a full chunk: overwrite its last byte
            data = rng.randbytes(rng.randrange(1, min(3 * BLOCK_BYTES, CHUNK_BYTES - offset) + 1))
            model.extend(bytes(max(0, offset - len(model))))
            model[offset:offset + len(data)] = data
            operation = ("write", offset, data)
        if len(model) == len(models[key]) and model == models[key] and operation[0] == "truncate":
            continue  # a same-length truncate does not bump the version
        if operation[0] == "truncate" and not model and versions[key] == 0:
            continue
        record("I", key, versions[key] + 1, model)
        if operation[0] == "truncate":
            meta = engine.truncate(key, operation[1], CHUNK_BYTES, 1)
        else:
            _, offset, data = operation
            meta = engine.write(key, offset, data, CHUNK_BYTES, 1, checksum=crc32c.crc32c(data))
        if meta.commit_version != versions[key] + 1 or meta.length != len(model):
            raise AssertionError(f"engine answered {meta}, expected version {versions[key] + 1}")
        versions[key] = meta.commit_version
        models[key] = model
        record("A", key, versions[key], model)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
