"""Service configuration: one frozen object, read from `ROOMS_*` environment variables at start.

`Settings` is the room policy (common/settings/room_policy.py: what rooms may be) and, here, how the
deployment runs: where the data lives, the bounds of every call, the event stream, the worker, abuse
limits, tickets. How values are named and read: common/settings/values.py.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

from common.logs import LogFormat
from common.settings.room_policy import (
    BODY_BESIDE_METADATA,
    MAX_PARTICIPANTS_CEILING,
    MAX_PRESENCE_TIMEOUT_SECONDS,
    RoomPolicy,
)
from common.settings.values import (
    ENV_PREFIX,
    PositiveInt,
    Seconds,
    SettingsError,
    address,
    check_redis_url,
    clock_fields,
    require,
)

__all__ = [
    "BODY_BESIDE_METADATA",
    "ENV_PREFIX",
    "MAX_PARTICIPANTS_CEILING",
    "MAX_PRESENCE_TIMEOUT_SECONDS",
    "RedisMode",
    "RoomPolicy",
    "Settings",
    "SettingsError",
    "clock_fields",
    "require",
]

RedisMode = Literal["standalone", "sentinel", "cluster"]


class Settings(RoomPolicy, frozen=True, kw_only=True):
    """Every knob of the service: the room policy's and the deployment's. Field `x` is read from `ROOMS_X`."""

    # Where the data lives. Empty means "not configured": `roomservice dev` then starts embedded servers.
    database_url: str = ""
    redis_url: str = ""
    # The Redis topology (docs/scaling.md). standalone: one server at `redis_url`. sentinel: the
    # Sentinels (`host:port,...`) name the primary of `redis_sentinel_master`, and the client follows
    # failovers. cluster: `redis_url` names one or more nodes (`redis://h1:7001,h2:7002`) and the
    # client discovers the rest.
    redis_mode: RedisMode = "standalone"
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_db: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0  # sentinel mode; standalone takes it from the URL
    # The Redis of arq's job queue; by default the rooms Redis (standalone and sentinel). Required in
    # cluster mode: arq's transactions span keys of several slots, which a cluster refuses.
    queue_redis_url: str = ""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    log_level: str = "info"
    # One JSON object per line, or plain text; unset: json for `serve` and `worker`, text for `dev`.
    log_format: LogFormat | None = None
    # A log line per request: every request, only those answered 5xx, or none (metrics count them all).
    access_log: Literal["all", "errors", "off"] = "errors"
    # Requests by route and status and their latency in /metrics; off saves their cost per request.
    http_metrics: bool = True
    # Serve the API's /metrics on this port of ROOMS_HOST instead of the public port; 0: on the public port.
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0

    # Postgres: one bound for acquiring a connection and running the statement, so a request
    # that needs Postgres answers (possibly 503) within about this long.
    db_timeout_seconds: Seconds = 1.5
    db_connect_timeout_seconds: Seconds = 1.0
    db_pool_min_size: Annotated[int, msgspec.Meta(ge=0, le=100)] = 1
    db_pool_max_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10

    # Redis: every command is bounded, and after `redis_breaker_threshold` consecutive failures
    # the breaker opens, so requests skip Redis until a probe after `redis_retry_seconds` succeeds.
    redis_timeout_seconds: Seconds = 0.25
    redis_retry_seconds: Seconds = 3.0
    redis_breaker_threshold: PositiveInt = 3
    redis_max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256

    # Room events (docs/events.md). Entries older than the retention are trimmed from the stream: a
    # consumer that falls further behind than that misses them.
    stream_name: Annotated[str, msgspec.Meta(min_length=1)] = "rooms:events"
    stream_retention_seconds: Annotated[int, msgspec.Meta(ge=3600, le=30 * 86400)] = 86400
    # At most about this many entries stay in the stream whatever their age (`XADD ... MAXLEN ~`), so a
    # burst of events cannot fill Redis before the retention trims them: docs/scaling.md sizes it for a
    # day of the target load (10,000 events/s). 0: only the retention trims.
    stream_max_length: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)] = 864_000_000
    # Unpublished outbox rows younger than this are left to the API that wrote them: above the
    # database timeout, so that an API still marking what it published is not raced by the relay.
    relay_grace_seconds: Seconds = 2.0
    # When the Redis primaries change (a failover, a restart), events published from this long before
    # they were last seen are published again: Redis replicates asynchronously, so a promoted replica
    # may lack the last writes its primary acknowledged. Consumers drop the copies by eventId.
    stream_replay_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 60

    # The worker.
    # Bounds for the worker's batches: larger than the API's, as a batch carries thousands of rooms.
    worker_redis_timeout_seconds: Seconds = 5.0
    worker_db_timeout_seconds: Seconds = 10.0
    consumer_group: Annotated[str, msgspec.Meta(min_length=1)] = "roomservice-history"
    consumer_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    # An entry pending this long with a consumer is taken over by another: longer than the slowest batch.
    claim_idle_seconds: Seconds = 30.0
    max_deliveries: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    # Periodic jobs run on a clock (arq cron): the interval must divide a minute or an hour evenly.
    sweep_interval_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    expiry_interval_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 10
    # How often the worker looks for rooms to end as empty or unused (ROOMS_EMPTY_TIMEOUT_SECONDS and
    # ROOMS_UNUSED_TIMEOUT_SECONDS are a room's own): they end up to this much after their time.
    presence_check_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 10
    sweep_batch_size: Annotated[int, msgspec.Meta(ge=100, le=50_000)] = 5000
    # Ended rooms older than this many days leave the database with their history, events and
    # Idempotency-Keys (daily statistics stay); 0 keeps them for ever.
    retention_days: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 90
    # How often the worker prunes (ended rooms past the retention, published outbox rows, old
    # Idempotency-Keys); also at its start. Same clock rule as the other intervals.
    prune_interval_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 3600
    # The worker's /metrics and /health, on ROOMS_HOST; 0 serves neither.
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9101
    # /health answers 503 once one of the worker's loops has not come round for this long.
    worker_stuck_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 120.0

    # Abuse protection (fail open while Redis is down). A room code answers "does this meeting exist",
    # so each client (X-User-Id, else peer address) may get only so many 404/410 a minute; 0 disables.
    miss_limit_per_minute: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 30
    # A recent 404 is remembered this long, so repeated unknown codes do not reach Postgres.
    negative_cache_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    # Rooms one host may create a minute; 0 disables.
    create_limit_per_minute: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 60
    # Changes (PATCH) and ends (DELETE) one user may make a minute, over all rooms; 0 disables. Each
    # change is an event kept in the stream for its retention.
    change_limit_per_minute: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 60

    # Join tickets (docs/signaling.md). Comma-separated paths of PEM Ed25519 private keys: the first
    # signs, all are published. Empty: no tickets are issued (503), the rest of the service runs.
    ticket_keys: str = ""
    ticket_issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "roomservice"
    # A ticket admits once, shortly after it is issued: minutes, not hours. Never past the room's end.
    ticket_ttl_seconds: Annotated[int, msgspec.Meta(ge=10, le=3600)] = 120
    # Tickets one user may get a minute; 0 disables.
    ticket_limit_per_minute: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 60

    # Analytics API.
    stats_max_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 366
    # Who may read the analytics (business data): user ids (UUIDs), comma-separated; nobody when empty.
    admin_user_ids: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.db_pool_min_size > self.db_pool_max_size:
            raise SettingsError(f"{ENV_PREFIX}DB_POOL_MIN_SIZE must not exceed {ENV_PREFIX}DB_POOL_MAX_SIZE")
        self._check_lifetimes()
        intervals = (
            "sweep_interval_seconds",
            "expiry_interval_seconds",
            "presence_check_seconds",
            "prune_interval_seconds",
        )
        for name in intervals:
            if clock_fields(getattr(self, name)) is None:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()} must divide 60, or be a whole number of minutes dividing 60"
                )
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise SettingsError(f"{ENV_PREFIX}LOG_LEVEL must be one of debug, info, warning, error")
        self._check_redis_topology()
        self.admins  # noqa: B018 - parsed now, so that a bad one stops the start

    def _check_lifetimes(self) -> None:
        """Settings whose meaning depends on another's: each pair named in the message."""
        pairs = [
            # A replay republishes events from the stream's last moments: they must still be kept.
            (
                "stream_replay_seconds",
                "stream_retention_seconds",
                self.stream_replay_seconds <= self.stream_retention_seconds,
                "must not exceed",
            ),
            # An API process may take the database timeout to mark what it published: the relay waits longer.
            (
                "relay_grace_seconds",
                "db_timeout_seconds",
                self.relay_grace_seconds > self.db_timeout_seconds,
                "must be above",
            ),
            # A batch may take the worker's database timeout to record: it is not taken over before.
            (
                "claim_idle_seconds",
                "worker_db_timeout_seconds",
                self.claim_idle_seconds > self.worker_db_timeout_seconds,
                "must be above",
            ),
        ]
        for name, other, holds, rule in pairs:
            if not holds:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()} ({getattr(self, name)}) {rule} {ENV_PREFIX}{other.upper()} "
                    f"({getattr(self, other)})"
                )
        if self.metrics_port and self.metrics_port == self.port:
            raise SettingsError(f"{ENV_PREFIX}METRICS_PORT must differ from {ENV_PREFIX}PORT ({self.port})")

    def _check_redis_topology(self) -> None:
        if self.queue_redis_url:
            check_redis_url(self.queue_redis_url, "QUEUE_REDIS_URL")
        if self.redis_mode == "sentinel":
            self.sentinel_addresses  # noqa: B018 - parsed now, so that a bad one stops the start
            require(self.redis_sentinel_master, "REDIS_SENTINEL_MASTER", "in sentinel mode")
        elif self.redis_mode == "cluster":
            require(self.queue_redis_url, "QUEUE_REDIS_URL", _CLUSTER_QUEUE_REASON)
            if self.redis_url:
                self.cluster_nodes  # noqa: B018 - parsed now, so that a bad one stops the start
        elif self.redis_url:
            check_redis_url(self.redis_url, "REDIS_URL")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels, as (host, port)."""
        text = require(self.redis_sentinels, "REDIS_SENTINELS", "in sentinel mode")
        return [address(item, "REDIS_SENTINELS") for item in text.split(",")]

    @property
    def cluster_nodes(self) -> list[tuple[str, int]]:
        """The cluster nodes named by `redis_url`, as (host, port): where discovery starts."""
        text = require(self.redis_url, "REDIS_URL", "in cluster mode")
        scheme, _, rest = text.partition("://")
        if scheme not in {"redis", "rediss"} or not rest:
            raise SettingsError(f"{ENV_PREFIX}REDIS_URL must be redis://host:port[,host:port...] in cluster mode")
        return [address(item.rsplit("@", 1)[-1].split("/")[0], "REDIS_URL") for item in rest.split(",")]

    @property
    def admins(self) -> frozenset[UUID]:
        """The users of `admin_user_ids`."""
        try:
            return frozenset(UUID(item.strip()) for item in self.admin_user_ids.split(",") if item.strip())
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}ADMIN_USER_IDS must be UUIDs, comma-separated") from None

    @property
    def redis_configured(self) -> bool:
        """Whether the settings say where Redis is (`roomservice dev` starts one where they do not)."""
        return bool(self.redis_sentinels if self.redis_mode == "sentinel" else self.redis_url)


_CLUSTER_QUEUE_REASON = (
    "in cluster mode: arq's job queue uses transactions over keys of several hash slots, which a Redis "
    "Cluster refuses, so the queue needs a standalone (or Sentinel-managed) Redis of its own"
)
