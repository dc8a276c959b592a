"""Pick the CRC32C block size of the chunk engine by measurement.

Goal: every read verifies the CRC32C of each block it touches, so the block
size trades three costs against each other:

* small random reads (4 KiB) must read and checksum the whole blocks they touch:
  read amplification grows with the block size;
* large sequential reads/writes pay a fixed Python + syscall cost per block:
  it grows as blocks shrink;
* the block checksums live in the chunk's LMDB value (4 bytes per block): a
  64 MiB chunk with 4 KiB blocks would carry a 64 KiB value, rewritten on
  every write.

Method: a 64 MiB file of random bytes in a temp dir (page cache warm, as the
storage node usually is). For each block size, time (a) verifying a 4 MiB
chunk read block by block in one pread (``checksum whole chunk``), (b) random
4 KiB reads that pread the touched blocks and verify them, (c) the meta value
size of a 4 MiB and a 64 MiB chunk. Run: ``python bench/checksum_block_size.py``.
The numbers and the choice are copied into storage_service/chunk_engine.py.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import crc32c

from fireflyfs.common.limits import KiB, MiB


def verify_blocks(view: memoryview, block_size: int) -> int:
    """CRC32C each block of view, as the engine does on read; returns a fold to keep it live."""
    fold = 0
    for start in range(0, len(view), block_size):
        fold ^= crc32c.crc32c(view[start:start + block_size])
    return fold


def measure(path: str, block_size: int, reads_4k: int, rng: random.Random) -> dict[str, float]:
    file_size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        # (a) whole 4 MiB chunk, verified block by block.
        rounds = 16
        started = time.perf_counter()
        for i in range(rounds):
            data = os.pread(fd, 4 * MiB, (i * 4 * MiB) % file_size)
            verify_blocks(memoryview(data), block_size)
        whole_gbps = rounds * 4 * MiB / (time.perf_counter() - started) / 1e9

        # (b) random 4 KiB reads: pread the touched blocks, verify, slice.
        started = time.perf_counter()
        for _ in range(reads_4k):
            offset = rng.randrange(0, file_size - 4 * KiB)
            first = offset // block_size * block_size
            last_end = -(-(offset + 4 * KiB) // block_size) * block_size
            data = os.pread(fd, last_end - first, first)
            verify_blocks(memoryview(data), block_size)
            bytes(memoryview(data)[offset - first:offset - first + 4 * KiB])
        per_read_us = (time.perf_counter() - started) / reads_4k * 1e6
    finally:
        os.close(fd)
    return {"whole_chunk_GBps": whole_gbps, "read_4k_us": per_read_us,
            "meta_4MiB_chunk_B": 4 * (4 * MiB // block_size),
            "meta_64MiB_chunk_B": 4 * (64 * MiB // block_size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reads", type=int, default=20000)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"SEED={args.seed} reads={args.reads} crc32c hardware={crc32c.hardware_based}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chunks.bin")
        with open(path, "wb") as out:
            for _ in range(16):
                out.write(rng.randbytes(4 * MiB))
        for block_size in (4 * KiB, 16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 1 * MiB):
            measure(path, block_size, 200, rng)  # warm-up
            result = measure(path, block_size, args.reads, rng)
            print(f"block {block_size // KiB:5d} KiB: whole 4 MiB chunk {result['whole_chunk_GBps']:6.2f} GB/s"
                  f"  random 4 KiB read {result['read_4k_us']:6.1f} us"
                  f"  meta {result['meta_4MiB_chunk_B']:6d} B/4MiB chunk"
                  f" {result['meta_64MiB_chunk_B']:6d} B/64MiB chunk")


if __name__ == "__main__":
    main()
