"""Scrub: one background thread per storage node re-verifies every committed chunk, at a bounded rate.

Bit rot shows only when the bytes are read; a chunk nobody reads could rot on
every replica before anyone notices. A pass pages through each local target's
chunk metadata (``ChunkEngine.metas_after``, in key order) and re-reads each
committed chunk with ``ChunkEngine.verify``; a chunk with bad blocks goes to
the repair queue (repair.py), the same one client reports and reads feed.
Pending chunks are skipped (their update is still travelling the chain), and
so are chunks replaced while being verified; chunks written after the pass
started may or may not be seen by it.

The bytes read are paced by a token bucket (common/pacing.py) at
``bytes_per_s`` (default 8 MiB/s: a 1 TiB target takes about 36 hours), so
foreground reads keep the disk; a new pass starts at most every
``interval_s`` after the previous one started. Clock, wall clock and sleep are
parameters: tests drive the rate limit on a fake clock.

Progress per target (``progress``): the current pass's start, chunks and bytes
checked so far and the target's used bytes when it started (for a percentage),
the last full pass's end and duration, passes completed. Storage.ScrubStatus
reports it with the repair queue's counters (bad chunks found, repaired,
unrepairable), which count what scrub, reads and reports found alike.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from fireflyfs.common.limits import KiB, MiB
from fireflyfs.common.pacing import TokenBucket

from .chunk_meta import describe_key
from .repair import RepairSource
from .target import Target

log = logging.getLogger(__name__)

scrub_bytes_per_s_default = 8 * MiB
scrub_interval_s_default = 3600.0      # between pass starts: a small store is not re-read in a tight loop
scrub_burst_bytes = 256 * KiB
scrub_page_chunks = 256
pace_resolution_s = 0.001     # a wait shorter than this is skipped (float rounding leaves such crumbs)


@dataclasses.dataclass(slots=True)
class ScrubProgress:
    """One target's scrub state (see the module docstring); times in seconds, wall clock."""

    pass_started_s: float = 0.0       # 0: no pass running on this target
    pass_chunks_checked: int = 0
    pass_bytes_checked: int = 0
    pass_bytes_total: int = 0
    last_pass_ended_s: float = 0.0    # 0: no full pass yet
    last_pass_duration_s: float = 0.0
    passes_completed: int = 0


class Scrubber:
    """Verifies every target's chunks in passes; hands bad ones to ``offer`` (RepairQueue.offer)."""

    def __init__(self, targets: dict[int, Target], offer: Callable[[int, bytes, RepairSource], bool],
                 bytes_per_s: int = scrub_bytes_per_s_default, interval_s: float = scrub_interval_s_default, *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], object] | None = None, page_chunks: int = scrub_page_chunks,
                 burst_bytes: int = scrub_burst_bytes) -> None:
        if bytes_per_s <= 0:
            raise ValueError(f"scrub needs a positive rate, not {bytes_per_s} bytes/s (0 turns it off)")
        self._targets = targets
        self._offer = offer
        self.bytes_per_s = bytes_per_s
        self.interval_s = interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait        # wakes at once on stop
        self._page_chunks = page_chunks
        self._bucket = TokenBucket(bytes_per_s, burst_bytes, clock=clock)
        self._lock = threading.Lock()
        self.progress = {target_id: ScrubProgress() for target_id in targets}
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[int, ScrubProgress]:
        with self._lock:
            return {target_id: dataclasses.replace(progress) for target_id, progress in self.progress.items()}

    # ---- one pass ---------------------------------------------------------------

    def _pace(self, nbytes: int) -> None:
        """Wait until nbytes more may be read. The bucket caps one wait (pacing.delay_s_max): a
        larger debt is paid in several, down to a remainder too small to matter."""
        delay = self._bucket.reserve(nbytes, self._clock())
        while delay > pace_resolution_s and not self._stop.is_set():
            self._sleep(delay)
            delay = self._bucket.reserve(0, self._clock())

    def scrub_target(self, target: Target) -> bool:
        """One full pass over target; False when stopped before its end."""
        progress = self.progress[target.id]
        started = self._clock()
        with self._lock:
            progress.pass_started_s = self._wall_clock()
            progress.pass_chunks_checked = progress.pass_bytes_checked = 0
            progress.pass_bytes_total = target.space().used_bytes
        start_after = None
        while not self._stop.is_set():
            page = target.engine.metas_after(start_after, self._page_chunks)
            for key, meta in page:
                if self._stop.is_set():
                    return False
                if not meta.committed:
                    continue
                self._pace(meta.length)
                if self._stop.is_set():
                    return False
                verdict = target.engine.verify(key)
                with self._lock:
                    progress.pass_chunks_checked += 1
                    progress.pass_bytes_checked += meta.length
                if verdict is not None and not verdict.ok:
                    log.warning("target %d: scrub found %s (commit %d) with bad blocks %s", target.id,
                                describe_key(key), verdict.meta.commit_version, list(verdict.bad_blocks))
                    self._offer(target.id, key, RepairSource.SCRUB)
            if len(page) < self._page_chunks:
                break          # the last page: the pass is complete
            start_after = page[-1][0]
        else:
            return False       # stopped between pages
        with self._lock:
            progress.last_pass_ended_s = self._wall_clock()
            progress.last_pass_duration_s = self._clock() - started
            progress.passes_completed += 1
            progress.pass_started_s = 0.0
            checked = progress.pass_chunks_checked, progress.pass_bytes_checked
        log.info("target %d: scrub pass done in %.1fs: %d chunks, %d bytes verified", target.id,
                 self._clock() - started, *checked)
        return True

    def run_pass(self) -> bool:
        """Every target once, in id order; False when stopped midway."""
        return all(self.scrub_target(self._targets[target_id]) for target_id in sorted(self._targets))

    # ---- the thread --------------------------------------------------------------

    def start(self) -> None:
        log.info("scrub: %d bytes/s, a pass at most every %.0fs over targets %s", self.bytes_per_s,
                 self.interval_s, sorted(self._targets))
        self._thread = threading.Thread(target=self._run, name="scrub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self.run_pass()
            except Exception:     # a closed engine at shutdown, a bug: not in a tight loop
                log.exception("scrub pass failed")
            self._stop.wait(max(started + self.interval_s - self._clock(), 1.0))

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
