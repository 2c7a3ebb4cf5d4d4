from __future__ import annotations

from uuid import UUID

import pytest

from common.environment import load_settings
from common.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.port == 8000
    assert settings.room_ttl_seconds == 86400
    assert settings.default_max_participants == 4
    assert settings.max_participants_limit == 4
    assert settings.redis_timeout_seconds == 0.25
    assert settings.redis_retry_seconds <= 5


def test_reads_prefixed_variables_and_ignores_others() -> None:
    settings = load_settings(
        {"ROOMS_PORT": "9000", "ROOMS_MAX_PARTICIPANTS_LIMIT": "50", "PORT": "1", "ROOMS_UNKNOWN": "x"}
    )
    assert settings.port == 9000
    assert settings.max_participants_limit == 50


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ROOMS_PORT": "eighty"}, "ROOMS_PORT"),
        ({"ROOMS_PORT": "70000"}, "ROOMS_PORT"),
        ({"ROOMS_REDIS_TIMEOUT_SECONDS": "0"}, "ROOMS_REDIS_TIMEOUT_SECONDS"),
        ({"ROOMS_ROOM_TTL_SECONDS": "-5"}, "ROOMS_ROOM_TTL_SECONDS"),
        ({"ROOMS_MAX_PARTICIPANTS_LIMIT": "1"}, "ROOMS_MAX_PARTICIPANTS_LIMIT"),
        ({"ROOMS_DEFAULT_MAX_PARTICIPANTS": "10"}, "ROOMS_DEFAULT_MAX_PARTICIPANTS"),
        ({"ROOMS_LOG_LEVEL": "loud"}, "ROOMS_LOG_LEVEL"),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ROOMS_REDIS_MODE": "replicated"}, "ROOMS_REDIS_MODE"),
        ({"ROOMS_REDIS_MODE": "sentinel", "ROOMS_REDIS_SENTINEL_MASTER": "rooms"}, "ROOMS_REDIS_SENTINELS is required"),
        (
            {"ROOMS_REDIS_MODE": "sentinel", "ROOMS_REDIS_SENTINELS": "s1:26379"},
            "ROOMS_REDIS_SENTINEL_MASTER is required",
        ),
        (
            {
                "ROOMS_REDIS_MODE": "sentinel",
                "ROOMS_REDIS_SENTINELS": "s1:26379,s2",
                "ROOMS_REDIS_SENTINEL_MASTER": "m",
            },
            "'s2' is not host:port",
        ),
        ({"ROOMS_REDIS_MODE": "cluster", "ROOMS_REDIS_URL": "redis://r1:7001"}, "ROOMS_QUEUE_REDIS_URL is required"),
        (
            {"ROOMS_REDIS_MODE": "cluster", "ROOMS_REDIS_URL": "r1:7001", "ROOMS_QUEUE_REDIS_URL": "redis://q"},
            "ROOMS_REDIS_URL must be redis://host:port",
        ),
        ({"ROOMS_REDIS_URL": "redis://a:1,b:2"}, "ROOMS_REDIS_URL must be one"),
        ({"ROOMS_QUEUE_REDIS_URL": "http://q"}, "ROOMS_QUEUE_REDIS_URL must be one"),
    ],
)
def test_redis_topologies_are_checked_at_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


def test_redis_topologies_are_read() -> None:
    sentinel = load_settings(
        {
            "ROOMS_REDIS_MODE": "sentinel",
            "ROOMS_REDIS_SENTINELS": "s1:26379, s2:26380",
            "ROOMS_REDIS_SENTINEL_MASTER": "rooms",
        }
    )
    assert sentinel.sentinel_addresses == [("s1", 26379), ("s2", 26380)]
    assert sentinel.redis_configured
    cluster = load_settings(
        {
            "ROOMS_REDIS_MODE": "cluster",
            "ROOMS_REDIS_URL": "redis://user:pw@r1:7001,r2:7002",
            "ROOMS_QUEUE_REDIS_URL": "redis://queue:6379/0",
        }
    )
    assert cluster.cluster_nodes == [("r1", 7001), ("r2", 7002)]
    assert not load_settings({}).redis_configured


def test_admin_user_ids_are_uuids() -> None:
    admin = "6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60"
    assert load_settings({"ROOMS_ADMIN_USER_IDS": f" {admin} ,"}).admins == {UUID(admin)}
    assert load_settings({}).admins == frozenset()
    with pytest.raises(SettingsError, match="ROOMS_ADMIN_USER_IDS"):
        load_settings({"ROOMS_ADMIN_USER_IDS": f"{admin},alice"})


def test_the_body_limit_leaves_room_for_the_metadata() -> None:
    settings = load_settings({})
    assert (settings.metadata_max_bytes, settings.max_body_bytes) == (2048, 4096)
    fits = load_settings({"ROOMS_METADATA_MAX_BYTES": "3072", "ROOMS_MAX_BODY_BYTES": "4096"})
    assert fits.metadata_max_bytes == 3072
    for environ in (
        {"ROOMS_METADATA_MAX_BYTES": "3073"},  # the default body limit, 4096, less the rest of the body
        {"ROOMS_MAX_BODY_BYTES": "1024"},  # the default metadata limit, 2048, does not fit
        {"ROOMS_METADATA_MAX_BYTES": "1024", "ROOMS_MAX_BODY_BYTES": "1024"},
    ):
        with pytest.raises(SettingsError, match=r"ROOMS_METADATA_MAX_BYTES .* ROOMS_MAX_BODY_BYTES"):
            load_settings(environ)


@pytest.mark.parametrize(
    ("environ", "first", "second"),
    [
        (
            {"ROOMS_STREAM_REPLAY_SECONDS": "7200", "ROOMS_STREAM_RETENTION_SECONDS": "3600"},
            "ROOMS_STREAM_REPLAY_SECONDS",
            "ROOMS_STREAM_RETENTION_SECONDS",
        ),
        ({"ROOMS_RELAY_GRACE_SECONDS": "1.5"}, "ROOMS_RELAY_GRACE_SECONDS", "ROOMS_DB_TIMEOUT_SECONDS"),
        (
            {"ROOMS_RELAY_GRACE_SECONDS": "3", "ROOMS_DB_TIMEOUT_SECONDS": "4"},
            "ROOMS_RELAY_GRACE_SECONDS",
            "ROOMS_DB_TIMEOUT_SECONDS",
        ),
        ({"ROOMS_CLAIM_IDLE_SECONDS": "10"}, "ROOMS_CLAIM_IDLE_SECONDS", "ROOMS_WORKER_DB_TIMEOUT_SECONDS"),
        ({"ROOMS_METRICS_PORT": "8000"}, "ROOMS_METRICS_PORT", "ROOMS_PORT"),
        ({"ROOMS_MAX_ROOM_SECONDS": "3600"}, "ROOMS_ROOM_TTL_SECONDS", "ROOMS_MAX_ROOM_SECONDS"),
        ({"ROOMS_PRUNE_INTERVAL_SECONDS": "7"}, "ROOMS_PRUNE_INTERVAL_SECONDS", "ROOMS_PRUNE_INTERVAL_SECONDS"),
    ],
)
def test_settings_that_depend_on_each_other_are_refused_naming_both(
    environ: dict[str, str], first: str, second: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    assert first in str(refused.value)
    assert second in str(refused.value)


def test_settings_that_depend_on_each_other_are_accepted_at_their_bounds() -> None:
    settings = load_settings(
        {
            "ROOMS_STREAM_REPLAY_SECONDS": "3600",
            "ROOMS_STREAM_RETENTION_SECONDS": "3600",
            "ROOMS_RELAY_GRACE_SECONDS": "1.6",
            "ROOMS_CLAIM_IDLE_SECONDS": "10.5",
            "ROOMS_METRICS_PORT": "9100",
            "ROOMS_ROOM_TTL_SECONDS": "7200",
            "ROOMS_MAX_ROOM_SECONDS": "7200",
        }
    )
    assert (settings.stream_replay_seconds, settings.relay_grace_seconds, settings.metrics_port) == (3600, 1.6, 9100)
    assert settings.room_ttl_seconds == settings.max_room_seconds == 7200


def test_presence_timeouts_and_their_check() -> None:
    defaults = load_settings({})
    assert (defaults.empty_timeout_seconds, defaults.unused_timeout_seconds) == (300, 1800)
    assert defaults.presence_check_seconds == 10
    bounds = load_settings(
        {
            "ROOMS_EMPTY_TIMEOUT_SECONDS": "0",
            "ROOMS_UNUSED_TIMEOUT_SECONDS": "86400",
            "ROOMS_PRESENCE_CHECK_SECONDS": "1",
        }
    )
    assert (bounds.empty_timeout_seconds, bounds.unused_timeout_seconds, bounds.presence_check_seconds) == (0, 86400, 1)
    assert load_settings({"ROOMS_PRESENCE_CHECK_SECONDS": "120"}).presence_check_seconds == 120


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROOMS_EMPTY_TIMEOUT_SECONDS", "-1"),
        ("ROOMS_EMPTY_TIMEOUT_SECONDS", "86401"),
        ("ROOMS_EMPTY_TIMEOUT_SECONDS", "1.5"),
        ("ROOMS_UNUSED_TIMEOUT_SECONDS", "-1"),
        ("ROOMS_UNUSED_TIMEOUT_SECONDS", "86401"),
        ("ROOMS_UNUSED_TIMEOUT_SECONDS", "never"),
        ("ROOMS_PRESENCE_CHECK_SECONDS", "0"),
        ("ROOMS_PRESENCE_CHECK_SECONDS", "7"),  # the worker's checks fall on the clock, as its other jobs do
        ("ROOMS_PRESENCE_CHECK_SECONDS", "3601"),
    ],
)
def test_a_presence_setting_out_of_bounds_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})
