"""Many callers' commands sent together: each caller's commands run in its order, and each caller gets
back a result per command (a command Redis refused with its error in its place), or its own error.

This is how concurrent requests share a round trip (see common/redis/gathering.py): what costs is not
Redis but the client's work per round trip (a connection taken from the pool, a write, a read, a
task woken), and that work is the same for one command as for a hundred.

A caller is either a `Read` (values of keys that share a cluster slot) or a sequence of stages, each a
function that queues commands on a `CommandQueue`. There are two ways of sending them, one per kind of
client:

- **one round trip** (one server, or the primary the Sentinels name): every command of every caller
  goes in one pipeline, on one connection, where Redis runs them in the order sent; the reads go
  first, all of them merged into one MGET.
- **stage by stage** (a cluster): a cluster pipeline sends to each node at once, so the order between
  commands on different nodes holds only between round trips: every caller's first stage (and each
  read, as an MGET of its own: keys of different slots cannot share one) goes in the first, every
  second stage once those are answered, and so on. A stage goes out whatever the earlier stages
  answered: a refused command fails itself alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError

from common.redis.client import RedisClient
from common.redis.commands import Command, CommandQueue, send
from common.redis.scripts import LuaScript

# Queues one step of a caller's commands.
Stage = Callable[[CommandQueue], object]


@dataclass(frozen=True, slots=True)
class Read:
    """A caller that only reads: the values of `keys`, which share a cluster slot."""

    keys: tuple[str, ...]


Caller = Sequence[Stage] | Read

# A caller's results: a result per command it queued (a refused command's error in its place), or
# for a `Read` a value per key; or, if what it queued could not be sent at all (its stage raised, or
# redis-py could not encode an argument), that error alone.
Outcome = list[Any] | Exception

# A caller's commands, stage by stage, or the error its stages raised.
_Recorded = list[list[Command]] | Exception


async def run_batch(client: RedisClient, callers: Sequence[Caller], scripts: Mapping[str, LuaScript]) -> list[Outcome]:
    """Send every caller's commands; an outcome per caller, in the same order.

    Raises only if a round trip itself fails (Redis unreachable, or too slow for the callers' bound,
    or a node failing over): then none of them can tell what ran.
    """
    recorded = [_record(caller) for caller in callers]
    try:
        return await _send_recorded(client, callers, recorded, scripts)
    except DataError as refused:
        if len(callers) == 1:
            return [refused]
        # Some caller's argument could not be encoded, which fails a pipeline before anything is sent
        # on one server: each caller alone, so that it fails only its own.
        return [await _alone(client, caller, rec, scripts) for caller, rec in zip(callers, recorded, strict=True)]


async def _alone(client: RedisClient, caller: Caller, recorded: _Recorded, scripts: Mapping[str, LuaScript]) -> Outcome:
    try:
        return (await _send_recorded(client, [caller], [recorded], scripts))[0]
    except DataError as refused:
        return refused


def _record(caller: Caller) -> _Recorded:
    if isinstance(caller, Read):
        # As a bare MGET: redis-py refuses the mget method on a cluster pipeline, though it routes the
        # command itself when its keys share a slot.
        return [[Command(("MGET", *caller.keys), {})]]
    stages = []
    for stage in caller:
        queue = CommandQueue()
        try:
            stage(queue)
        except Exception as bug:  # this caller's alone: nothing of it is sent
            return bug
        stages.append(queue.commands)
    return stages


async def _send_recorded(
    client: RedisClient, callers: Sequence[Caller], recorded: Sequence[_Recorded], scripts: Mapping[str, LuaScript]
) -> list[Outcome]:
    if isinstance(client, RedisCluster):
        outcomes = await _stage_by_stage(client, recorded, scripts)
        # A read's outcome is its MGET's results: the values, or the MGET's error.
        return [
            _values(outcome) if isinstance(caller, Read) else outcome
            for caller, outcome in zip(callers, outcomes, strict=True)
        ]
    return await _one_round_trip(client, callers, recorded, scripts)


async def _one_round_trip(
    client: RedisClient, callers: Sequence[Caller], recorded: Sequence[_Recorded], scripts: Mapping[str, LuaScript]
) -> list[Outcome]:
    merged_keys = [key for caller in callers if isinstance(caller, Read) for key in caller.keys]
    commands = [Command(("MGET", *merged_keys), {})] if merged_keys else []
    spans: list[tuple[int, int]] = []  # each caller's commands: [start, end) of `commands`
    for caller, stages in zip(callers, recorded, strict=True):
        start = len(commands)
        if not isinstance(caller, Read) and not isinstance(stages, Exception):
            commands.extend(command for stage in stages for command in stage)
        spans.append((start, len(commands)))
    results = await send(client, commands, scripts) if commands else []

    merged = _values(results[:1]) if merged_keys else []
    outcomes: list[Outcome] = []
    read_from = 0  # where the next read's values start in the merged MGET's
    for caller, stages, (start, end) in zip(callers, recorded, spans, strict=True):
        if isinstance(caller, Read):
            outcomes.append(
                merged if isinstance(merged, Exception) else merged[read_from : read_from + len(caller.keys)]
            )
            read_from += len(caller.keys)
        else:
            outcomes.append(stages if isinstance(stages, Exception) else results[start:end])
    return outcomes


async def _stage_by_stage(
    client: RedisClient, recorded: Sequence[_Recorded], scripts: Mapping[str, LuaScript]
) -> list[Outcome]:
    outcomes: list[Outcome] = [stages if isinstance(stages, Exception) else [] for stages in recorded]
    rounds = max((len(stages) for stages in recorded if not isinstance(stages, Exception)), default=0)
    for round_index in range(rounds):
        commands: list[Command] = []
        spans: list[tuple[list[Any], int, int]] = []  # (a caller's results so far, start, end)
        for stages, outcome in zip(recorded, outcomes, strict=True):
            if isinstance(stages, Exception) or isinstance(outcome, Exception) or round_index >= len(stages):
                continue
            start = len(commands)
            commands.extend(stages[round_index])
            spans.append((outcome, start, len(commands)))
        if commands:
            results = await send(client, commands, scripts)
            for so_far, start, end in spans:
                so_far.extend(results[start:end])
    return outcomes


def _values(mget_results: Outcome) -> Outcome:
    """A read's values out of its MGET's results (or the MGET's error)."""
    if isinstance(mget_results, Exception):
        return mget_results
    values: Outcome = mget_results[0]
    return values
