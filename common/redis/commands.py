"""Commands recorded now and sent later, and how one list of them is sent as one pipeline.

A request does not queue its commands on a redis-py pipeline: it queues them on a `CommandQueue`,
which records each one as redis-py's own command methods build it. The batch (common/redis/batch.py)
then copies the records onto the pipelines it sends, and keeps them to name a failing command or to
send a script call again after NOSCRIPT, without reading redis-py's private command stacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from redis.commands.core import AsyncDataAccessCommands
from redis.exceptions import AskError, ClusterError, NoScriptError, ReadOnlyError, ResponseError, TryAgainError

from common.redis.client import RedisClient
from common.redis.scripts import LuaScript


class Command(NamedTuple):
    """One command as redis-py's command method built it: what a pipeline's `execute_command` takes."""

    args: tuple[Any, ...]
    options: dict[str, Any]


class CommandQueue(AsyncDataAccessCommands):
    """Takes redis-py's methods of the data commands (`set`, `delete`, `incr`, `xadd`, `mget`, ...)
    and `execute_command`, and records each command instead of sending it. The methods return nothing
    useful: results come with the batch."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        # Declared by redis-py's command mixins for the clients they serve; no command queued here uses it.
        self.connection_pool: Any = None

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.commands.append(Command(args, options))


async def send(client: RedisClient, commands: Sequence[Command], scripts: Mapping[str, LuaScript]) -> list[Any]:
    """Send `commands` as one pipeline (not a transaction); a result per command, in order, a command
    that Redis refused (a wrong type, say) with its error in its place.

    Script calls that met NOSCRIPT (Redis restarted, or a failover promoted a replica that never loaded
    the script) failed alone, the other commands having run: the scripts are loaded (on every primary
    of a cluster) and just those calls sent again.

    Raises if the node, not the command, is in trouble (unreachable, failing over): then nobody can
    tell which of the commands ran.
    """
    results = await _pipelined(client, commands)
    unscripted = [i for i, result in enumerate(results) if _script_unknown(result, commands[i], scripts)]
    if unscripted:
        for sha in {str(commands[i].args[1]) for i in unscripted}:
            await client.script_load(scripts[sha].source)
        again = await _pipelined(client, [commands[i] for i in unscripted])
        for i, result in zip(unscripted, again, strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, Exception) and not refused(result):
            raise result
    for command, result in zip(commands, results, strict=True):
        if isinstance(result, Exception):
            # Name the failing command, as redis-py does when it raises from a pipeline itself.
            result.args = (f"{command.args[0]} in a pipeline failed: {result.args[0] if result.args else ''}",)
    return results


async def _pipelined(client: RedisClient, commands: Sequence[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command.args, **command.options)
    results: list[Any] = await pipe.execute(raise_on_error=False)
    return results


def _script_unknown(result: Any, command: Command, scripts: Mapping[str, LuaScript]) -> bool:
    return isinstance(result, NoScriptError) and str(command.args[1]) in scripts


def refused(error: Exception) -> bool:
    """Whether Redis refused this one command (a wrong type, say), rather than a node being unable to
    run anything: a cluster pipeline reports the loss of a connection, or a failover, as a result."""
    return isinstance(error, ResponseError) and not isinstance(error, _NODE_TROUBLE)


# Refusals that say the node, not the command, is in trouble.
_NODE_TROUBLE = (ClusterError, TryAgainError, ReadOnlyError, AskError)
