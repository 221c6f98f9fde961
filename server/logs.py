"""Logging set-up: one JSON object per line for machines, readable lines on a terminal.

Secrets never reach a log line: the only places that see them (token check, signature check)
do not log them, ``render`` of the configuration masks them, and the access log redacts the
``?token=`` that ``/events`` accepts (``RedactToken``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"]*")

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactToken(logging.Filter):
    """Replaces the value of a ``token=`` query parameter in a log record with ``***``.

    hypercorn logs a request as a format string plus a dict of atoms (request line, query
    string, ...); every text atom is scrubbed in place, so the format still finds its keys.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, MutableMapping):
            for key, value in list(args.items()):
                if isinstance(value, str) and "token=" in value:
                    args[key] = redact(value)
        elif isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = redact(record.msg)
        return True


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # hypercorn configures its own loggers; route them through ours.
    for name in ("hypercorn.error", "hypercorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    access = logging.getLogger("hypercorn.access")
    if not any(isinstance(f, RedactToken) for f in access.filters):
        access.addFilter(RedactToken())
