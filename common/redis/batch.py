"""Many callers' pipelines sent as one: each caller's commands run in its order, and each caller gets
back its own results, or its own first error.

This is how concurrent requests share a round trip (see `GuardedRedis.pipeline`): what costs is not
Redis but the client's work per round trip (a connection taken from the pool, a write, a read, a
task woken), and that work is the same for one command as for a hundred.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError

from common.redis.client import AnyPipeline, RedisClient
from common.redis.scripts import LuaScript

# Queues one step of a caller's commands on a pipeline.
Stage = Callable[[AnyPipeline], object]

# A caller's results, one per command it queued; or the first error among its commands.
Outcome = list[Any] | Exception


async def run_batch(
    client: RedisClient, callers: Sequence[Sequence[Stage]], scripts: Mapping[str, LuaScript]
) -> list[Outcome]:
    """Run the stages of every caller; an outcome per caller, in the same order.

    The order each caller asks for holds across keys and nodes. On one server every stage of every
    caller goes in one round trip, on one connection, where Redis runs them in the order sent. A
    cluster pipeline sends to each node at once, so there the callers' first stages go together,
    then, once those are answered, the second stages of the callers whose first did not fail, and so
    on. Raises only if the round trip itself fails (Redis unreachable, or too slow for the caller's
    bound): then none of the callers can tell what ran.
    """
    outcomes: list[Outcome] = [[] for _ in callers]
    rounds = max((len(stages) for stages in callers), default=0) if isinstance(client, RedisCluster) else 1
    for round_index in range(rounds):
        pipe = client.pipeline(transaction=False)
        spans = []  # (caller, first command, end)
        for caller, stages in enumerate(callers):
            if isinstance(outcomes[caller], Exception):
                continue  # a later stage never runs after an earlier one failed
            start = len(pipe)
            for stage in stages if rounds == 1 else stages[round_index : round_index + 1]:
                stage(pipe)
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
    for i, result in enumerate(results):
        if isinstance(result, Exception):
            # Name the failing command, as redis-py does when it raises from a pipeline itself.
            name = _command(queued[i])[0][0]
            result.args = (f"{name} in a pipeline failed: {result.args[0] if result.args else ''}",)
    return results


def _queued(pipe: AnyPipeline) -> list[Any]:
    """The pipeline's stack of queued commands (the list itself: no copy on the hot path)."""
    return pipe._command_stack if isinstance(pipe, ClusterPipeline) else pipe.command_stack


def _command(queued: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One queued command as (args, options), whichever kind of pipeline queued it."""
    if isinstance(queued, tuple):
        return queued
    return queued.args, dict(queued.kwargs)  # a cluster pipeline's PipelineCommand
