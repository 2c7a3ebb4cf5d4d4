"""The migration runner against a real, empty database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from roomservice.migrate import Migration, MigrationError, available_migrations, migrate


async def applied(url: str) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")]
    finally:
        await conn.close()


async def test_applies_every_file_once_in_order(scratch_database) -> None:
    shipped = [m.name for m in available_migrations()]
    assert shipped == sorted(shipped)
    assert shipped[0].startswith("0001_")

    assert await migrate(scratch_database) == shipped
    assert await migrate(scratch_database) == []  # the second run changes nothing
    assert await applied(scratch_database) == shipped


async def test_concurrent_runners_apply_each_file_once(scratch_database) -> None:
    results = await asyncio.gather(*(migrate(scratch_database) for _ in range(4)))

    shipped = [m.name for m in available_migrations()]
    assert sorted(results, key=len, reverse=True) == [shipped, [], [], []]
    assert await applied(scratch_database) == shipped


async def test_an_edited_applied_file_is_refused(scratch_database) -> None:
    original = available_migrations()
    await migrate(scratch_database, original)
    edited = [Migration(name=original[0].name, sql=original[0].sql + "\n-- edited\n"), *original[1:]]

    with pytest.raises(MigrationError, match="was edited after it was applied"):
        await migrate(scratch_database, edited)


async def test_a_failing_file_leaves_nothing_behind(scratch_database) -> None:
    good = Migration(name="0001_a.sql", sql="CREATE TABLE a (x int)")
    bad = Migration(name="0002_b.sql", sql="CREATE TABLE b (x int); SELECT no_such_function()")

    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(scratch_database, [good, bad])

    assert await applied(scratch_database) == ["0001_a.sql"]
    conn = await asyncpg.connect(scratch_database, timeout=10)
    try:
        assert await conn.fetchval("SELECT to_regclass('b')") is None  # its transaction rolled back
    finally:
        await conn.close()
