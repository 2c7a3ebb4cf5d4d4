"""Single flight: one run of the work per key at a time, its answer or error shared by every caller."""

from __future__ import annotations

import asyncio

import pytest

from common.service.single_flight import SingleFlight


class Work:
    """Work that counts its runs and finishes when released."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.runs += 1
        await self.release.wait()
        return self.answer


async def test_concurrent_callers_of_a_key_share_one_run_and_each_key_gets_its_own_answer() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    a, b = Work("room a"), Work("room b")
    callers = [asyncio.create_task(flight.run("a", a)) for _ in range(50)]
    callers += [asyncio.create_task(flight.run("b", b)) for _ in range(50)]
    await asyncio.sleep(0)
    a.release.set()
    b.release.set()
    answers = await asyncio.gather(*callers)
    assert (a.runs, b.runs) == (1, 1)
    assert answers == ["room a"] * 50 + ["room b"] * 50


async def test_an_error_reaches_every_caller_and_the_next_call_runs_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    runs = 0

    async def failing() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise TimeoutError("database did not answer")

    results = await asyncio.gather(*(flight.run("a", failing) for _ in range(10)), return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, TimeoutError) for r in results)
    with pytest.raises(TimeoutError):
        await flight.run("a", failing)
    assert runs == 2


async def test_a_caller_that_gives_up_leaves_the_work_to_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work("room a")
    impatient = asyncio.create_task(flight.run("a", work))
    patient = asyncio.create_task(flight.run("a", work))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):  # a caller bounded by its own deadline
            await flight.run("a", work)
    work.release.set()
    assert await patient == "room a"
    assert impatient.cancelled()
    assert work.runs == 1
