"""Crash safety of the chunk engine: SIGKILL a writer at random moments, then check.

Goal: no acknowledged write is lost and no torn chunk is visible after a kill.
Method: crash_writer.py (a child process) loops over overwrites (copy-on-write),
appends (in place), gap appends and truncates on three chunks, logging an intent
line before each engine call and an acknowledgement after it (fsync'd). The
test kills it with SIGKILL after a seeded random delay, reopens the engine and
checks, per chunk: every block CRC verifies on a full read, no unreferenced
chunk file is left, and the content is exactly the last acknowledged state, or
the one in-flight state whose intent was logged (it may have committed before
the kill cut the acknowledgement). Then the writer restarts from there.
Everything random derives from one seed, printed first (FFS_SEED replays).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import crc32c
import pytest

from fireflyfs.storage_service.chunk_engine import ChunkEngine
from tests.conftest import announce_seed, seed_from_env

WRITER = Path(__file__).with_name("crash_writer.py")
CHUNK_BYTES = 64 * 1024
BLOCK_BYTES = 4 * 1024


def parse_log(log_path: Path) -> tuple[dict[str, tuple[int, int, int]], dict[str, tuple[int, int, int]], int]:
    """(last acknowledged, last intent) per key as (version, length, crc), and the ack count."""
    acked: dict[str, tuple[int, int, int]] = {}
    intent: dict[str, tuple[int, int, int]] = {}
    acks = 0
    text = log_path.read_text() if log_path.exists() else ""
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # the kill cut this line: neither its intent nor its ack counts
        kind, key, version, length, crc = line.split()
        state = (int(version), int(length), int(crc))
        if kind == "A":
            acked[key] = state
            acks += 1
        else:
            intent[key] = state
    return acked, intent, acks


def check_target(target: Path, log_path: Path) -> int:
    """Verify the engine against the log; returns how many chunks were checked."""
    acked, intent, _ = parse_log(log_path)
    with ChunkEngine(target, block_size=BLOCK_BYTES) as engine:
        metas = {f"{inode:016x}{index:08x}": meta for inode, index, meta in engine.iter_metas()}
        live = {f"{key}.{meta.file_version}" for key, meta in metas.items()}
        assert set(os.listdir(engine.chunks_dir)) == live, "unreferenced chunk files after recovery"
        for key_hex in set(acked) | set(intent):
            meta = metas.get(key_hex)
            data = engine.read(bytes.fromhex(key_hex), 0, CHUNK_BYTES)[0] if meta else b""  # verifies
            state = (meta.commit_version, len(data), crc32c.crc32c(data)) if meta else (0, 0, 0)
            allowed = {acked.get(key_hex, (0, 0, 0))}
            if key_hex in intent and intent[key_hex][0] == allowed.copy().pop()[0] + 1:
                allowed.add(intent[key_hex])
            assert state in allowed, (f"chunk {key_hex}: on disk (version, length, crc) {state}, "
                                      f"allowed {sorted(allowed)}")
    return len(metas)


def run_kills(request, tmp_path: Path, kills: int, acks_per_round_min: int, delay_s_max: float) -> None:
    seed = seed_from_env()
    announce_seed(request, seed, kills=kills, acks_per_round_min=acks_per_round_min, delay_s_max=delay_s_max)
    rng = random.Random(seed)
    target = tmp_path / "target"
    log_path = tmp_path / "acks.log"
    for round_index in range(kills):
        _, _, acks_before = parse_log(log_path)
        child = subprocess.Popen([sys.executable, str(WRITER), str(target), str(log_path),
                                  str(rng.randrange(1 << 32))])
        try:
            deadline = time.monotonic() + 20
            while parse_log(log_path)[2] < acks_before + acks_per_round_min:
                assert child.poll() is None, f"writer exited with {child.returncode}"
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, delay_s_max))
            assert child.poll() is None, f"writer exited with {child.returncode}"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        checked = check_target(target, log_path)
        assert checked >= 1, f"round {round_index}: nothing written"
    acked, _, acks = parse_log(log_path)
    assert acks >= kills * acks_per_round_min and acked


def test_sigkill_loses_no_acknowledged_write(request, tmp_path):
    run_kills(request, tmp_path, kills=4, acks_per_round_min=20, delay_s_max=0.15)


@pytest.mark.slow
def test_sigkill_soak(request, tmp_path):
    run_kills(request, tmp_path, kills=25, acks_per_round_min=50, delay_s_max=0.4)
