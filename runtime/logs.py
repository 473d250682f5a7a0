"""Structured log lines: one event name and its fields per line, nothing secret.

Events are written by `runtime.observe`, which picks their fields from a
short list; prompts, API keys, worker auth keys and payout addresses are never
among them. As a second guard the formatter blanks any field whose name says it
holds one of those. Two renderings of the same record:

  text (default)  2025-01-01T12:00:00.123Z INFO queenbee.requests request method=POST status=200 ...
  json            {"ts": "...", "level": "INFO", "logger": "queenbee.requests", "event": "request", ...}
"""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Set by the request middleware; every line logged while serving that request
# (including jobs recorded in the background) carries it.
request_id: ContextVar[str] = ContextVar("queenbee_request_id", default="")

SECRET_FIELDS = frozenset(
    {"authorization", "api_key", "auth_key", "token", "password", "ln_address", "ln_url", "payout_address", "prompt", "messages", "input", "sig"}
)


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. Fields with value None are left out."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def _logfmt_value(value: Any) -> str:
    if isinstance(value, float):
        value = round(value, 4)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    if text == "" or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


class StructuredFormatter(logging.Formatter):
    def __init__(self, *args, json_lines: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.json_lines = json_lines

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = dict(getattr(record, "fields", None) or {})
        rid = request_id.get()
        if rid:
            fields.setdefault("request_id", rid)
        return {k: "[redacted]" if k.lower() in SECRET_FIELDS else v for k, v in fields.items()}

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields = self.fields(record)
        message = record.getMessage()
        if self.json_lines:
            line = {"ts": ts, "level": record.levelname, "logger": record.name, "event": message, **fields}
            if record.exc_info:
                line["exc"] = self.formatException(record.exc_info)
            return json.dumps(line, default=str)
        text = f"{ts} {record.levelname} {record.name} {message}"
        if fields:
            text += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
