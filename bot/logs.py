"""Logging: plain or JSON lines, with known secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

from bot import log_context
from core.masking import mask_urls

_TOKEN_RE = re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b")  # Telegram bot tokens
# Claim codes (43 URL-safe chars) in deep links, `/start <code>` and `/claim/<code>`, and the
# signed tokens of download URLs (`/files/<body>.<mac>`): whoever reads the log must not claim.
_CLAIM_RE = re.compile(r"(start=|/start\s+|/claim/)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_SIGNED_RE = re.compile(r"(/files/)[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6 and secret not in self.secrets:
            self.secrets.append(secret)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = mask_urls(text)  # passwords inside URLs (DATABASE_URL, S3, proxies …)
        text = _TOKEN_RE.sub("[redacted-token]", text)
        text = _CLAIM_RE.sub(r"\1[redacted-code]", text)
        return _SIGNED_RE.sub(r"\1[redacted-token]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.scrub(message), None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in log_context.FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """The plain line, with ` [update_id=… job_id=…]` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        suffix = log_context.context_suffix(record)
        if not suffix:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the line
        return head + suffix + sep + tail


REDACTOR = RedactingFilter()
DATA_LOGGERS = ("sqlalchemy.engine", "sqlalchemy.pool", "aiosqlite", "asyncpg")


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(log_context.ContextFilter())
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    # At DEBUG these print statement parameters and result rows (FSM data, sealed secrets):
    # never part of the application log, whatever OPSDECK_LOG_LEVEL says.
    for name in DATA_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
