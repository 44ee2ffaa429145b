"""Fan work out to a pool of workers and fan the results back in, under a deadline.

A producer sends the numbers 0..99 into a buffered channel; eight workers square them
after a simulated network call of 1-10 ms; the main task collects the squares. Items 7
and 57 are stragglers whose call would take a minute: when the one-second deadline
passes, their calls are cancelled, the producer stops, and every channel gets closed.

Run it with ``python examples/pipeline.py``.
"""

from __future__ import annotations

import asyncio
import random

from distsys.concurrency import Chan, WaitGroup, go, select
from distsys.context import Context, background, with_timeout

ITEMS, WORKERS, DEADLINE, STRAGGLERS = 100, 8, 1.0, {7, 57}


async def produce(ctx: Context, jobs: Chan[int]) -> int:
    sent = 0
    try:
        for n in range(ITEMS):
            index, _ = await select((jobs.send, n), ctx.done)
            if index == 1:
                break  # the deadline passed: send no more
            sent += 1
    finally:
        jobs.close()  # the only sender closes the channel; the workers' loops then end
    return sent


async def work(ctx: Context, jobs: Chan[int], results: Chan[tuple[int, int | None]]) -> None:
    rng = random.Random()
    async for n in jobs:
        delay = 60.0 if n in STRAGGLERS else rng.uniform(0.001, 0.010)
        async with ctx.scope(raise_error=False) as scope:
            await asyncio.sleep(delay)  # stands in for a network call
        await results.send((n, None if scope.cancelled_caught else n * n))


async def main() -> None:
    ctx, cancel = with_timeout(background(), DEADLINE)
    try:
        jobs: Chan[int] = Chan(WORKERS)
        results: Chan[tuple[int, int | None]] = Chan(WORKERS)
        wg = WaitGroup()
        producer = go(produce, ctx, jobs)
        workers = [wg.go(work, ctx, jobs, results) for _ in range(WORKERS)]

        async def close_results() -> None:
            await wg.wait()  # every worker has returned: nothing more will be sent
            results.close()

        closer = go(close_results)
        total, completed, cancelled = 0, 0, []
        async for n, square in results:  # fan in until the channel is closed
            if square is None:
                cancelled.append(n)
            else:
                total, completed = total + square, completed + 1
        sent = await producer
        await asyncio.gather(closer, *workers)
    finally:
        cancel()  # release the context's resources, like Go's `defer cancel()`
    print(f"sent {sent} of {ITEMS} items to {WORKERS} workers, deadline {DEADLINE} s")
    print(f"completed {completed} items, sum of their squares {total}")
    print(f"cancelled {len(cancelled)} items by the deadline: {sorted(cancelled)}")


if __name__ == "__main__":
    asyncio.run(main())
