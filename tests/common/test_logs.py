"""Service log lines name the service, the node and the request (common/logs.py)."""

from __future__ import annotations

import json
import logging

import pytest

from fireflyfs.common import logs


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_carry_service_node_and_request_id(tmp_path, restore_root_logging, monkeypatch):
    monkeypatch.delenv("FFS_LOG_FORMAT", raising=False)
    log_file = tmp_path / "storage.log"
    logs.setup("storage", 3, log_file)
    log = logging.getLogger("fireflyfs.test")
    log.info("outside any request")
    token = logs.request_id.set("7f3a9c")
    try:
        log.warning("inside one")
    finally:
        logs.request_id.reset(token)
    first, second = log_file.read_text().splitlines()
    assert " INFO storage[3] pid=" in first and " req=- fireflyfs.test: outside any request" in first
    assert " WARNING storage[3] " in second and "req=7f3a9c fireflyfs.test: inside one" in second


def test_json_lines_for_log_shippers(tmp_path, restore_root_logging, monkeypatch):
    monkeypatch.setenv("FFS_LOG_FORMAT", "json")
    log_file = tmp_path / "meta.log"
    logs.setup("meta", None, log_file)
    logs.set_node(10001)
    token = logs.request_id.set("abc")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("fireflyfs.meta").exception("failed")
    finally:
        logs.request_id.reset(token)
    line = json.loads(log_file.read_text().splitlines()[0])
    assert (line["service"], line["node"], line["request_id"], line["level"], line["message"]) == (
        "meta", "10001", "abc", "ERROR", "failed")
    assert "ValueError: boom" in line["exc"] and line["pid"] > 0
