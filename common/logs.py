"""Service logs: each record names its service, node and the request it serves.

A line reads ``TIME LEVEL storage[3] req=7f3a... logger: message``: grep one
request id (the id a client sends with every mutating Meta call and the
bulk/gRPC requests it makes for it) across every service's log to follow it.
``FFS_LOG_FORMAT=json`` writes one JSON object per line instead (time,
level, service, node, pid, request_id, logger, message, exc), for log
shippers. The gRPC server interceptor (rpc.make_server) sets ``request_id``
for the duration of each call whose request carries one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("ffs_request_id", default="-")
_node = {"service": "-", "node": "-"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s[%(node)s] pid=%(process)d req=%(request_id)s %(name)s: %(message)s"


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.service, record.node = _node["service"], _node["node"]
        record.request_id = request_id.get()
        return True


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "service": record.service,
                "node": record.node, "pid": record.process, "request_id": record.request_id,
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def set_node(node_id: int | str) -> None:
    """The node id once known (a meta server learns its own from its store after logging starts)."""
    _node["node"] = str(node_id)


def setup(service: str, node_id: int | str | None, log_file: str | os.PathLike | None,
          level: int = logging.INFO) -> None:
    """Route the process's logs to log_file (stderr when None), one line per record as above."""
    _node["service"] = service
    set_node(node_id if node_id else "-")
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.addFilter(_Context())
    json_lines = os.environ.get("FFS_LOG_FORMAT", "text") == "json"
    handler.setFormatter(_JsonLines() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in filter(None, os.environ.get("FFS_DEBUG_LOGGERS", "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
