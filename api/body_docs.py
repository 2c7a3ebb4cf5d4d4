"""The API description of the request bodies api/bodies.py decodes: what JSON Schema can say of them, and
in words what it cannot."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

from api.bodies import METADATA_RULES, NO_NUL_PATTERN, UUID_PATTERN
from common.rooms.model import MAX_COHOSTS
from common.settings import MAX_PRESENCE_TIMEOUT_SECONDS

_LIMIT_NOTE = "Between 2 and the configured limit (ROOMS_MAX_PARTICIPANTS_LIMIT)."

# or a key (each keyword applies to its own type only). Among the components (api/openapi.py), as it
# refers to itself.
METADATA_VALUE = "MetadataValue"
_METADATA_VALUE_REF = Reference(ref=f"#/components/schemas/{METADATA_VALUE}")
METADATA_VALUE_SCHEMA = Schema(
    type=[
        OpenAPIType.STRING,
        OpenAPIType.NUMBER,
        OpenAPIType.BOOLEAN,
        OpenAPIType.NULL,
        OpenAPIType.ARRAY,
        OpenAPIType.OBJECT,
    ],
    pattern=NO_NUL_PATTERN,
    items=_METADATA_VALUE_REF,
    property_names=Schema(type=OpenAPIType.STRING, pattern=NO_NUL_PATTERN),
    additional_properties=_METADATA_VALUE_REF,
    description="A value inside room metadata.",
)


def metadata_note(max_bytes: int) -> str:
    """The description of `metadata` in a body: JSON Schema cannot bound an encoded size, so in words."""
    return (
        f"A JSON object of at most {max_bytes} bytes encoded as compact JSON (ROOMS_METADATA_MAX_BYTES); "
        f"larger answers 413 `metadata_too_large`. {METADATA_RULES}"
    )


def _user_id_schema(description: str) -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID, pattern=UUID_PATTERN, description=description)


def _cohosts_schema(description: str) -> Schema:
    return Schema(
        type=OpenAPIType.ARRAY,
        items=_user_id_schema("A co-host's user id."),
        max_items=MAX_COHOSTS,
        unique_items=True,
        description=(
            f"Up to {MAX_COHOSTS} users who may change the participant limit and the metadata and end the room. "
            "None may be named twice (compared as UUIDs) and none may be the host: either answers 400 "
            f"`invalid_cohosts`. {description}"
        ),
    )


def _moment_schema(description: str, *, nullable: bool) -> Schema:
    return Schema(
        type=[OpenAPIType.STRING, OpenAPIType.NULL] if nullable else OpenAPIType.STRING,
        format=OpenAPIFormat.DATE_TIME,
        description=f"RFC 3339, with an offset (`Z` or `+01:00`). {description}",
    )


_SCHEDULE_RULES = "Out of these bounds: 422 `invalid_schedule`, naming the field and the bound."


def _schedule_properties(create: bool) -> dict[str, Schema | Reference]:
    """`startsAt` and `expiresAt`: their bounds are relative to now and to settings, so in words."""
    if create:
        starts = (
            "When the room opens: `scheduled` until then, `active` after. At most 60 s in the past and at most "
            "ROOMS_MAX_SCHEDULE_DAYS days ahead. Absent or null: now."
        )
        ends = (
            "When the room ends: after `startsAt`, at least 10 s from now, and at most ROOMS_MAX_ROOM_SECONDS "
            "after `startsAt`. Absent or null: ROOMS_ROOM_TTL_SECONDS after `startsAt`."
        )
    else:
        starts = (
            "Moves the start of a room that is still `scheduled` (409 `room_started` once it has started). At "
            "most 60 s in the past and at most ROOMS_MAX_SCHEDULE_DAYS days ahead. Absent: unchanged."
        )
        ends = (
            "Moves the end: extends or shortens the room. At least 10 s from now, after the start, and at most "
            "ROOMS_MAX_ROOM_SECONDS after it. Absent: unchanged."
        )
    return {
        "startsAt": _moment_schema(f"{starts} {_SCHEDULE_RULES}", nullable=create),
        "expiresAt": _moment_schema(f"{ends} {_SCHEDULE_RULES}", nullable=create),
    }


# What each timeout means (as the answers' views say it), and the setting that is its default.
_TIMEOUTS = {
    "emptyTimeoutSeconds": (
        "Seconds a room may stay empty after its last participant leaves before it ends; 0 never.",
        "ROOMS_EMPTY_TIMEOUT_SECONDS",
    ),
    "unusedTimeoutSeconds": (
        "Seconds after its start a room nobody joined may stay before it ends; 0 never.",
        "ROOMS_UNUSED_TIMEOUT_SECONDS",
    ),
}


def _timeout_properties(create: bool) -> dict[str, Schema | Reference]:
    """The presence timeouts: whole seconds, 0 .. MAX_PRESENCE_TIMEOUT_SECONDS; never null. Outside, or not
    a whole number: 400, naming the field."""
    return {
        name: Schema(
            type=OpenAPIType.INTEGER,
            minimum=0,
            maximum=MAX_PRESENCE_TIMEOUT_SECONDS,
            description=(
                f"{meaning} At most {MAX_PRESENCE_TIMEOUT_SECONDS} (a day). "
                + (f"Absent: this deployment's default ({setting})." if create else "Absent: unchanged.")
            ),
        )
        for name, (meaning, setting) in _TIMEOUTS.items()
    }


def room_body(*, create: bool) -> type[Operation]:
    """An OpenAPI operation documenting the body a handler decodes itself: `{"maxParticipants": n,
    "metadata": {...}, "cohostIds": [...], "startsAt": t, "expiresAt": t, "emptyTimeoutSeconds": s,
    "unusedTimeoutSeconds": s}` (and on a change `hostId`),
    when creating optional as a whole, when changing at least one field. The bounds that are settings are
    filled in by api/openapi.py."""

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            metadata = Schema(
                type=[OpenAPIType.OBJECT, OpenAPIType.NULL],
                property_names=Schema(type=OpenAPIType.STRING, pattern=NO_NUL_PATTERN),
                additional_properties=_METADATA_VALUE_REF,
                description=(
                    "Absent or null: none."
                    if create
                    else "Replaces the room's metadata; null clears it; absent: unchanged."
                ),
            )
            limit = Schema(
                # When creating, `null` asks for the default, as leaving it out does.
                type=[OpenAPIType.INTEGER, OpenAPIType.NULL] if create else OpenAPIType.INTEGER,
                minimum=2,
                description=f"{_LIMIT_NOTE} Absent or null: the default."
                if create
                else f"{_LIMIT_NOTE} Absent: unchanged.",
            )
            properties: dict[str, Schema | Reference] = {
                "maxParticipants": limit,
                "metadata": metadata,
                **_schedule_properties(create),
                **_timeout_properties(create),
            }
            if create:
                properties["cohostIds"] = _cohosts_schema("Absent: none.")
            else:
                properties["cohostIds"] = _cohosts_schema(
                    "Replaces the co-hosts; `[]` removes them; absent: unchanged. Only the host may change them (403)."
                )
                properties["hostId"] = _user_id_schema(
                    "Hands the room to this user, who leaves the co-hosts if among them; the caller stays on as a "
                    "co-host only if named in `cohostIds`. Only the host may (403)."
                )
            schema = Schema(
                # An optional body may also be JSON `null`, which means no options, as no body does.
                type=[OpenAPIType.OBJECT, OpenAPIType.NULL] if create else OpenAPIType.OBJECT,
                properties=properties,
                # A change must change something: one field at least.
                min_properties=None if create else 1,
                additional_properties=False,
            )
            self.request_body = RequestBody(
                required=not create,
                description="Room options; the body may be omitted, or be `null`." if create else "What to change.",
                content={"application/json": OpenAPIMediaType(schema=schema)},
            )

    return _Documented
