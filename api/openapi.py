"""The parts of the API description that Litestar cannot derive from the handlers.

Litestar describes parameters, bodies and statuses from the handlers' signatures and decorators. It
cannot give a response header a schema, put headers on error responses, link one operation's answer
to the next operation, or know a limit that is a setting; `complete_description` adds those to the
app's description once, when the app is made, so the description says everything the server enforces.
"""

from __future__ import annotations

from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

from api.body_docs import METADATA_VALUE, METADATA_VALUE_SCHEMA, metadata_note
from api.observe import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from common.settings import Settings

# Who calls: the gateway authenticates the user and passes on their id. Named by the operations that
# require it (`security=CALLER`); without it, or with one that is not a UUID, they answer 401.
CALLER_SCHEME = "userId"
CALLER: list[SecurityRequirement] = [{CALLER_SCHEME: []}]
_CALLER_SCHEME = SecurityScheme(
    type="apiKey",
    name="X-User-Id",
    security_scheme_in="header",
    description="The authenticated user's id, a UUID, injected by the gateway (replacing any the client sent).",
)

# Every answer carries the request's id (api/observe.py).
_REQUEST_ID = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING, pattern=REQUEST_ID_PATTERN),
    required=True,
    description="The request's id: the caller's `X-Request-Id` when it is 1 to 128 visible ASCII characters, "
    "else one made for it. It names the request in the service's logs.",
)
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    required=True,
    description="Seconds to wait before asking again.",
)
# Every error body is an ErrorBody; of those, a 429 and a 503 say when to ask again.
_ERROR_BODY = "#/components/schemas/ErrorBody"
_RETRY_AFTER_STATUSES = {"429", "503"}
# Shared headers are described once, among the components, and referred to by each answer.
_SHARED_HEADERS = {REQUEST_ID_HEADER: _REQUEST_ID, "Retry-After": _RETRY_AFTER}

# Headers of particular answers, by path, method and status.
_HEADERS: dict[tuple[str, str, str], dict[str, OpenAPIHeader]] = {
    ("/rooms", "post", "201"): {
        "Location": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING, pattern=r"^/rooms/[a-z]{3}-[a-z]{4}-[a-z]{3}$"),
            required=True,
            description="The new room: `/rooms/{roomId}`.",
        ),
        "Idempotent-Replayed": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING, enum=["true"]),
            required=False,
            description="`true` when this is the answer of an earlier request with the same Idempotency-Key; "
            "absent when the room was made by this request.",
        ),
    },
    ("/rooms/{room_id}/tickets", "post", "409"): {"Retry-After": _RETRY_AFTER},
    ("/rooms/{room_id}/tickets", "post", "201"): {
        "Cache-Control": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING, enum=["no-store"]),
            required=True,
            description="A ticket is a credential: no cache may keep it.",
        ),
    },
    ("/.well-known/jwks.json", "get", "200"): {
        "Cache-Control": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING, pattern=r"^max-age=[0-9]+$"),
            required=True,
            description="How long a verifier may keep the key set before fetching it again.",
        ),
    },
}

# Where the room a create answers with can be used next (followed by clients and by stateful tests).
_ROOM_OF_CREATE = {"room_id": "$response.body#/roomId"}
_CREATE_LINKS = {
    "GetRoom": ("/rooms/{room_id}", "get", "The room just made."),
    "UpdateRoom": ("/rooms/{room_id}", "patch", "Change the new room: its limit, metadata, co-hosts or host."),
    "EndRoom": ("/rooms/{room_id}", "delete", "End the new room."),
    "GetRoomHistory": ("/rooms/{room_id}/history", "get", "The new room's events."),
    "GetRoomSessions": ("/rooms/{room_id}/sessions", "get", "The new room's sessions."),
    "IssueTicket": ("/rooms/{room_id}/tickets", "post", "A join ticket for the new room."),
}


def complete_description(openapi: OpenAPI, settings: Settings) -> None:
    """Add to `openapi` (the app's own description, which it serves) what its handlers cannot say."""
    components = openapi.components if isinstance(openapi.components, Components) else Components()
    components.security_schemes = {**(components.security_schemes or {}), CALLER_SCHEME: _CALLER_SCHEME}
    components.headers = {**(components.headers or {}), **_SHARED_HEADERS}
    components.schemas = {**(components.schemas or {}), METADATA_VALUE: METADATA_VALUE_SCHEMA}
    openapi.components = components
    for field in ("metadata", "cohostIds"):
        _always_present(components, field, "RoomView", "RoomSummary")
    _always_present(components, "metadata", "PublicRoomView")
    _describe_room_views(openapi, components)
    for path, method, operation in _operations(openapi):
        for status, response in (operation.responses or {}).items():
            if not isinstance(response, OpenAPIResponse):
                continue
            headers = response.headers or {}
            headers.update(_HEADERS.get((path, method, status), {}))
            if status in _RETRY_AFTER_STATUSES and _is_error_body(response):
                headers["Retry-After"] = _shared("Retry-After")
            headers[REQUEST_ID_HEADER] = _shared(REQUEST_ID_HEADER)
            response.headers = headers
        _state_body_limits(operation, settings)
    _link_create_to_the_room(openapi)


def _always_present(components: Components, field: str, *names: str) -> None:
    """A field with a default is in every body nonetheless (`metadata`: null when there is none), which
    Litestar cannot tell from the struct: it is required."""
    for name in names:
        schema = (components.schemas or {}).get(name)
        if isinstance(schema, Schema):
            schema.required = sorted({*(schema.required or []), field})


# Who sees which view of a room (api/routes/rooms.py `get_room`).
_ROOM_VIEWS = {
    "RoomView": "A room as its host and co-hosts see it, with who hosts it (`hostId`, `cohostIds`).",
    "PublicRoomView": "A live room as anyone else who knows its code sees it: without who hosts it.",
}


def _describe_room_views(openapi: OpenAPI, components: Components) -> None:
    """Say whose each view is; and the room's answer is either, `anyOf`: a host's view has every field
    of the public one, so it matches both, which Litestar's `oneOf` for a union would forbid."""
    for name, description in _ROOM_VIEWS.items():
        schema = (components.schemas or {}).get(name)
        if isinstance(schema, Schema):
            schema.description = description
    item = (openapi.paths or {}).get("/rooms/{room_id}")
    answer = (item.get.responses or {}).get("200") if item is not None and item.get is not None else None
    media = (answer.content or {}).get("application/json") if isinstance(answer, OpenAPIResponse) else None
    if media is not None and isinstance(media.schema, Schema) and media.schema.one_of:
        media.schema = Schema(any_of=media.schema.one_of)


def _shared(header: str) -> Reference:
    return Reference(ref=f"#/components/headers/{header}")


def _is_error_body(response: OpenAPIResponse) -> bool:
    media = (response.content or {}).get("application/json")
    return media is not None and isinstance(media.schema, Reference) and media.schema.ref == _ERROR_BODY


def _operations(openapi: OpenAPI) -> list[tuple[str, str, Operation]]:
    found = []
    for path, item in (openapi.paths or {}).items():
        if not isinstance(item, PathItem):
            continue
        for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            operation = getattr(item, method)
            if isinstance(operation, Operation):
                found.append((path, method, operation))
    return found


def _state_body_limits(operation: Operation, settings: Settings) -> None:
    """`maxParticipants` goes up to a setting, and `metadata`'s size is bounded by one: the body schema
    says how far, for this deployment."""
    body = operation.request_body
    if body is None or isinstance(body, Reference):
        return
    for media in body.content.values():
        schema = media.schema
        properties = schema.properties if isinstance(schema, Schema) else None
        limit = (properties or {}).get("maxParticipants")
        if isinstance(limit, Schema):
            limit.maximum = settings.max_participants_limit
        metadata = (properties or {}).get("metadata")
        if isinstance(metadata, Schema):
            metadata.description = f"{metadata_note(settings.metadata_max_bytes)} {metadata.description or ''}".strip()


def _link_create_to_the_room(openapi: OpenAPI) -> None:
    operations = {(path, method): operation for path, method, operation in _operations(openapi)}
    created = (operations[("/rooms", "post")].responses or {}).get("201")
    if not isinstance(created, OpenAPIResponse):
        return
    created.links = {
        name: Link(
            operation_id=operations[(path, method)].operation_id,
            parameters=_ROOM_OF_CREATE,
            description=description,
        )
        for name, (path, method, description) in _CREATE_LINKS.items()
    }
