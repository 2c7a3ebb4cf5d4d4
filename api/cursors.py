"""Page cursors: the keyset position of a page's last item, handed to clients as an opaque `nextCursor`.

One codec for every paged route: a moment and a key that breaks ties between items of the same moment
(a room's id in `GET /rooms`, an event's version in a room's history; none in a room's sessions, whose
starts are unique in it), base64url of `moment|key`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from api.errors import ApiError

K = TypeVar("K")

# A `nextCursor`: base64url (padding optional) of a page's keyset position. Only a value this API
# returned is one, which no pattern can say; the parameter's description does.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+={0,2}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(moment: datetime, key: object) -> str:
    """The position (`moment`, `key`) of a page's last item, opaque to clients."""
    return base64.urlsafe_b64encode(f"{moment.isoformat()}|{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, key: Callable[[str], K]) -> tuple[datetime, K]:
    """The position `encode_cursor` made, its key read by `key` (which raises ValueError for a bad one);
    400 `invalid_cursor` for anything else, an empty cursor too."""
    # Checked first: the base64 decoder skips characters outside its alphabet rather than refusing them.
    if _CURSOR.fullmatch(cursor):
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            moment_text, key_text = raw.split("|")
            moment = datetime.fromisoformat(moment_text)
            if moment.tzinfo is not None:
                # Out of range at the edges of time: refused here, not by Postgres.
                return moment.astimezone(UTC), key(key_text)
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            pass
    raise ApiError(400, "invalid_cursor", "cursor must be a nextCursor value returned by this API")


def page_limit(limit: int, most: int) -> int:
    """A page size asked for: at least 1 (else 400 `invalid_limit`); more than `most` is served as `most`."""
    if limit < 1:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {most}")
    return min(limit, most)
