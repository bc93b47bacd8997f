"""structlog, configured once per process.

JSON lines when stdout is not a terminal (what log shippers want), a readable
console renderer when it is.  The standard-library loggers of Faust, mode,
aiokafka, kafka-python and clickhouse-driver are routed through the same
processor chain, so one process writes one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False

_NOISY = {"aiokafka": logging.WARNING, "kafka": logging.WARNING, "faust": logging.INFO,
          "mode": logging.INFO, "clickhouse_driver": logging.WARNING}


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if as_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, lvl in _NOISY.items():
        logging.getLogger(name).setLevel(max(lvl, root.level))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
