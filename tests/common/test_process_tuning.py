"""raise_open_files_limit (common/process_tuning.py), and that both services apply it at start.

Goal: a process started with a low soft RLIMIT_NOFILE runs with the soft
limit at the hard one, and logs the value. Method: child processes whose soft
limit is lowered before exec: one calls the helper directly; a real meta
process and a real storage process (whose mgmtd is absent: it keeps trying,
which does not matter here) are read through /proc/<pid>/limits once they log.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest
from fireflyfs.common.auth import new_cluster_secret
from tests import trust

SAFETY_S = 30.0
LOW_SOFT_LIMIT = 256


def lowered_soft_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def open_files_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open files line in /proc/<pid>/limits")


@pytest.fixture
def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= LOW_SOFT_LIMIT:
        pytest.fail(f"this machine's hard RLIMIT_NOFILE ({hard}) leaves nothing to raise")
    return hard


def test_the_helper_raises_the_soft_limit_to_the_hard_one(hard_limit):
    code = ("import logging, resource; logging.basicConfig(level=logging.INFO);"
            "from fireflyfs.common.process_tuning import raise_open_files_limit;"
            "print(raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=lowered_soft_limit, capture_output=True,
                          text=True, timeout=SAFETY_S, check=True)
    returned, soft, hard = map(int, done.stdout.split())
    assert returned == soft == hard == hard_limit
    assert f"open files limit raised from {LOW_SOFT_LIMIT} to {hard_limit}" in done.stderr


@pytest.mark.parametrize("service", ["meta", "storage"])
def test_each_service_raises_its_limit_at_start(tmp_path, hard_limit, service):
    log_file = tmp_path / f"{service}.log"
    if service == "meta":
        args = ["-m", "fireflyfs.meta_service", "--data-dir", str(tmp_path / "meta"), "--log-file", str(log_file),
                *trust.tls_args()]
    else:
        args = ["-m", "fireflyfs.storage_service", "--node-id", "1", "--data-dir", str(tmp_path / "storage"),
                "--mgmtd", "127.0.0.1:1", "--log-file", str(log_file),
                "--node-key-file", trust.node_key_file(tmp_path, new_cluster_secret(), 1), *trust.tls_args()]
    child = subprocess.Popen([sys.executable, *args], preexec_fn=lowered_soft_limit,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + SAFETY_S
        while "open files limit raised" not in (log_file.read_text() if log_file.exists() else ""):
            assert child.poll() is None, f"{service} exited with {child.returncode}"
            assert time.monotonic() < deadline, f"{service} logged no raised limit"
            time.sleep(0.05)
        assert open_files_limits(child.pid) == (hard_limit, hard_limit)
        assert f"open files limit raised from {LOW_SOFT_LIMIT} to {hard_limit}" in log_file.read_text()
    finally:
        child.terminate()
        try:
            child.wait(SAFETY_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
