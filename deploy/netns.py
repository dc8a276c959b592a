"""Network namespaces, veth links and tc qdiscs for the testbed, through ip(8) and tc(8).

Everything is named with the testbed's prefix (``ffstb-<name>-``), created
only inside namespaces this module makes, and written to a journal *before*
it is made, so ``sweep`` can remove all of it after any failure: by the
journal, and by the prefix in case the journal itself was lost. Deleting a
namespace deletes its veth ends (and their peers) and their qdiscs; the
processes inside are killed first, because a namespace with live processes
would otherwise keep their sockets alive after ``ip netns del``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time

log = logging.getLogger(__name__)

PREFIX = "ffstb-"
name_max = 6        # testbed names stay short: interface and namespace names have limits


class NetnsError(RuntimeError):
    """An ip/tc command failed (with the command and its stderr)."""


def namespace_prefix(testbed: str) -> str:
    if not testbed or len(testbed) > name_max or not testbed.isalnum():
        raise ValueError(f"testbed name must be 1..{name_max} letters or digits, not {testbed!r}")
    return f"{PREFIX}{testbed}-"


def available() -> str | None:
    """None when this process can build a testbed, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def run(argv: list[str], check: bool = True, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout_s)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def in_namespace(namespace: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    output = run(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in output.splitlines() if line.strip()]
    return sorted(name for name in names if name.startswith(prefix))


def pids_in(namespace: str) -> list[int]:
    result = run(["ip", "netns", "pids", namespace], check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def kill_processes_in(namespace: str, grace_s: float = 3.0) -> list[int]:
    """SIGTERM every process inside namespace (only ours live there), SIGKILL what remains."""
    pids = pids_in(namespace)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids_in(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids_in(namespace):
        log.warning("pid %d in %s ignored SIGTERM; killing it", pid, namespace)
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def delete_namespace(namespace: str) -> None:
    kill_processes_in(namespace)
    run(["ip", "netns", "del", namespace], check=False)


class Builder:
    """Makes namespaces, links and qdiscs, journaling each before making it.

    journal(kind, name) is called first (the testbed persists it), so a crash
    between the journal and the command leaves at worst a record of something
    that does not exist, which sweeping tolerates.
    """

    def __init__(self, journal) -> None:
        self.journal = journal

    def namespace(self, namespace: str) -> None:
        self.journal("namespace", namespace)
        run(["ip", "netns", "add", namespace])
        self.ip(namespace, "link", "set", "lo", "up")

    def ip(self, namespace: str, *args: str) -> None:
        run(["ip", "-n", namespace, *args])

    def tc(self, namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["tc", "-n", namespace, *args], check=check)

    def sysctl(self, namespace: str, key: str, value: str) -> None:
        run(in_namespace(namespace, ["sysctl", "-q", "-w", f"{key}={value}"]))

    def link(self, namespace_a: str, device_a: str, namespace_b: str, device_b: str) -> None:
        """A veth pair with one end in each namespace, MTU-sized segments, both ends up.

        gso_max_segs 1 / gso_max_size 1500 make TCP hand 1500-byte packets to
        the device instead of 64 KB GSO super-packets, so an HTB class's rate
        and a byte FIFO's limit mean what they say (no ethtool needed).
        """
        self.journal("link", f"{namespace_a}/{device_a}")
        run(["ip", "link", "add", device_a, "netns", namespace_a, "type", "veth",
             "peer", "name", device_b, "netns", namespace_b])
        for namespace, device in ((namespace_a, device_a), (namespace_b, device_b)):
            self.ip(namespace, "link", "set", "dev", device, "gso_max_segs", "1",
                    "gso_max_size", "1500", "up")
