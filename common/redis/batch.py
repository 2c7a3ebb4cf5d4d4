"""Many callers' pipelines sent as one: each caller's commands run in its order, and each caller gets
back its own results, or its own first error.

This is how concurrent requests share a round trip (see `GuardedRedis.pipeline`): what costs is not
Redis but the client's work per round trip (a connection taken from the pool, a write, a read, a
task woken), and that work is the same for one command as for a hundred.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    DataError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from common.redis.client import AnyPipeline, RedisClient
from common.redis.scripts import LuaScript

# Queues one step of a caller's commands on a pipeline.
Stage = Callable[[AnyPipeline], object]


@dataclass(frozen=True, slots=True)
class Read:
    """A caller that only reads: the values of `keys`, which share a cluster slot."""

    keys: tuple[str, ...]


Caller = Sequence[Stage] | Read

# A caller's results: a result per command it queued, or for a `Read` a value per key; or the
# first error among its commands.
Outcome = list[Any] | Exception


async def run_batch(client: RedisClient, callers: Sequence[Caller], scripts: Mapping[str, LuaScript]) -> list[Outcome]:
    """Run every caller's commands; an outcome per caller, in the same order.

    The order each caller asks for holds across keys and nodes. On one server everything goes in one
    round trip, on one connection, where Redis runs the commands in the order sent; the reads go
    first, all of them as one MGET. A cluster pipeline sends to each node at once, so there the
    callers' first stages (and each read, an MGET of its own: keys of different slots cannot share
    one) go together, then, once those are answered, the second stages of the callers whose first did
    not fail, and so on. Raises only if the round trip itself fails (Redis unreachable, or too slow
    for the callers' bound, or a node failing over): then none of them can tell what ran.

    A caller whose commands Redis refuses, or whose stage raises, or with an argument redis-py cannot
    encode, gets that error as its outcome; the others get theirs.
    """
    try:
        return await _run_batch(client, callers, scripts)
    except DataError as refused:
        if len(callers) == 1:
            return [refused]
        # Some caller's argument could not be encoded, which fails a pipeline before anything is
        # sent on one server: each caller alone, so that it fails only its own.
        return [await _alone(client, caller, scripts) for caller in callers]


async def _alone(client: RedisClient, caller: Caller, scripts: Mapping[str, LuaScript]) -> Outcome:
    try:
        return (await _run_batch(client, [caller], scripts))[0]
    except DataError as refused:
        return refused


async def _run_batch(client: RedisClient, callers: Sequence[Caller], scripts: Mapping[str, LuaScript]) -> list[Outcome]:
    if isinstance(client, RedisCluster):
        staged = [[_read_stage(caller)] if isinstance(caller, Read) else caller for caller in callers]
        outcomes = await _run_in_order(client, staged, scripts, rounds=max(map(len, staged), default=0))
        return [_unwrap(o) if isinstance(c, Read) else o for c, o in zip(callers, outcomes, strict=True)]

    reads = [caller for caller in callers if isinstance(caller, Read)]
    others = [caller for caller in callers if not isinstance(caller, Read)]
    if not reads:
        return await _run_in_order(client, others, scripts, rounds=1)
    merged = Read(tuple(key for read in reads for key in read.keys))
    values, *done = await _run_in_order(client, [[_read_stage(merged)], *others], scripts, rounds=1)
    read_outcomes, other_outcomes = iter(_split(_unwrap(values), reads)), iter(done)
    return [next(read_outcomes) if isinstance(caller, Read) else next(other_outcomes) for caller in callers]


def _read_stage(read: Read) -> Stage:
    # execute_command: redis-py refuses the mget method on a cluster pipeline, though it routes the
    # command itself when its keys share a slot.
    return lambda pipe: pipe.execute_command("MGET", *read.keys)


def _unwrap(outcome: Outcome) -> Outcome:
    """A read's values out of its MGET's results."""
    return outcome if isinstance(outcome, Exception) else outcome[0]


def _split(values: Outcome, reads: Sequence[Read]) -> list[Outcome]:
    """Each read's share of one merged MGET (or its error, for all of them)."""
    if isinstance(values, Exception):
        return [values] * len(reads)
    shares: list[Outcome] = []
    start = 0
    for read in reads:
        shares.append(values[start : start + len(read.keys)])
        start += len(read.keys)
    return shares


async def _run_in_order(
    client: RedisClient, callers: Sequence[Sequence[Stage]], scripts: Mapping[str, LuaScript], rounds: int
) -> list[Outcome]:
    """Every caller's stages in `rounds` round trips: all of them in one, or on a cluster the n-th stage
    of each caller in the n-th (a caller's later stages are dropped once one has failed)."""
    outcomes: list[Outcome] = [[] for _ in callers]
    for round_index in range(rounds):
        pipe = client.pipeline(transaction=False)
        spans = []  # (caller, first command, end)
        for caller, stages in enumerate(callers):
            if isinstance(outcomes[caller], Exception):
                continue
            start = len(pipe)
            try:
                for stage in stages if rounds == 1 else stages[round_index : round_index + 1]:
                    stage(pipe)
            except Exception as bug:  # this caller's alone: what it queued is taken back
                del _queued(pipe)[start:]
                outcomes[caller] = bug
                continue
            if len(pipe) > start:
                spans.append((caller, start, len(pipe)))
        if not spans:
            continue
        results = await _execute(client, pipe, scripts)
        for caller, start, end in spans:
            mine = results[start:end]
            failed = next((result for result in mine if isinstance(result, Exception)), None)
            outcomes[caller] = failed if failed is not None else outcomes[caller] + mine  # type: ignore[operator]
    return outcomes


async def _execute(client: RedisClient, pipe: AnyPipeline, scripts: Mapping[str, LuaScript]) -> list[Any]:
    """The pipeline's results, a command's error in its place. Script calls that met NOSCRIPT (Redis
    restarted, or a failover promoted a replica that never loaded the script) failed alone, the other
    commands having run: the scripts are loaded (on every primary of a cluster) and just those calls
    run again."""
    queued = _queued(pipe)  # taken before `execute`, which gives the pipeline a new, empty stack
    results: list[Any] = await pipe.execute(raise_on_error=False)
    unscripted = [
        i
        for i, result in enumerate(results)
        if isinstance(result, NoScriptError) and str(_command(queued[i])[0][1]) in scripts
    ]
    if unscripted:
        for sha in {str(_command(queued[i])[0][1]) for i in unscripted}:
            await client.script_load(scripts[sha].source)
        again = client.pipeline(transaction=False)
        for i in unscripted:
            args, options = _command(queued[i])
            again.execute_command(*args, **options)
        for i, result in zip(unscripted, await again.execute(raise_on_error=False), strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, Exception) and not _refused(result):
            raise result  # a node unreachable or failing over: none of the callers can tell what ran
    for i, result in enumerate(results):
        if isinstance(result, Exception):
            # Name the failing command, as redis-py does when it raises from a pipeline itself.
            name = _command(queued[i])[0][0]
            result.args = (f"{name} in a pipeline failed: {result.args[0] if result.args else ''}",)
    return results


def _refused(error: Exception) -> bool:
    """Whether Redis refused this one command (a wrong type, say), rather than a node being unable to
    run anything: a cluster pipeline reports the loss of a connection, or a failover, as a result."""
    return isinstance(error, ResponseError) and not isinstance(error, _NODE_TROUBLE)


# Refusals that say the node, not the command, is in trouble.
_NODE_TROUBLE = (ClusterError, TryAgainError, ReadOnlyError, AskError)


def _queued(pipe: AnyPipeline) -> list[Any]:
    """The pipeline's stack of queued commands (the list itself: no copy on the hot path)."""
    return pipe._command_stack if isinstance(pipe, ClusterPipeline) else pipe.command_stack


def _command(queued: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One queued command as (args, options), whichever kind of pipeline queued it."""
    if isinstance(queued, tuple):
        return queued
    return queued.args, dict(queued.kwargs)  # a cluster pipeline's PipelineCommand
