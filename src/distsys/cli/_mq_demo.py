"""``distsys demo mq``: kill a consumer mid-work and show that no message is lost.

::

    producer threads ──publish──▶ a temporary mq.db ◀──consume── victim process
      (sync Producer)                  │                           ✗ SIGKILL after K jobs
                                       │  ack_wait later, the      ◀──consume── survivor process
                                       │  victim's unacked jobs     (started at the kill;
                                       ▼  go to the survivor         SIGTERM: drains, exits)
                         results topic ──▶ this process tallies who handled what

Each worker handles a job in two parts: 30% of the work, the side effect (a result
record on the ``results`` topic), the other 70%, then the ack. A SIGKILL therefore
lands on some jobs before their side effect (redelivered: handled once) and on some after
it (redelivered: handled twice — the duplicates an idempotent handler would skip). One
poison job fails every time and ends in the dead-letter topic after ``max_deliveries``.
The summary accounts for every published job.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_ERROR,
    Broker,
    Consumer,
    Delivery,
    Producer,
    open_broker,
)
from distsys.resilience._retry_policy import Backoff

__all__ = ["MqDemoResult", "explain", "mq_demo", "run_mq_demo", "summary_table", "worker_main"]

WORK: Final = "work"
RESULTS: Final = "results"
DEAD: Final = "work-dead"
GROUP: Final = "workers"
TALLY: Final = "tally"
MAX_DELIVERIES: Final = 3
POISON_ERROR: Final = "ValueError: poison: cannot parse the order"
_BAR: Final = 36


@dataclass(frozen=True, slots=True)
class MqDemoResult:
    """What happened in a run (also the progress snapshot while it runs).

    Attributes:
        published: job ids published, in order.
        poison: the id of the job that always fails.
        handled: how many times each job id was handled (side effect recorded).
        redelivered: handlings that were a redelivery (attempt >= 2).
        by_worker: handlings per worker name.
        dead: dead-lettered job ids with their last error and attempts.
        victim_killed_after: jobs the victim had handled when it was killed (None: alive).
        survivor_exit: the survivor's exit code after SIGTERM (None: still running).
        elapsed: seconds since the start.
        timed_out: the run gave up waiting before every job was accounted for.
    """

    published: tuple[str, ...] = ()
    poison: str = ""
    handled: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0
    by_worker: dict[str, int] = field(default_factory=dict)
    dead: dict[str, tuple[str, str]] = field(default_factory=dict)
    victim_killed_after: int | None = None
    survivor_exit: int | None = None
    elapsed: float = 0.0
    timed_out: bool = False

    @property
    def duplicates(self) -> int:
        """Jobs handled more than once."""
        return sum(1 for n in self.handled.values() if n > 1)

    @property
    def lost(self) -> list[str]:
        """Published jobs neither handled nor dead-lettered."""
        return [i for i in self.published if i not in self.handled and i not in self.dead]

    @property
    def complete(self) -> bool:
        """Every published job is handled or dead-lettered."""
        return bool(self.published) and not self.lost


# -------------------------------------------------------------------- the workers


def worker_main(argv: list[str] | None = None) -> None:
    """Run one demo worker: ``URL NAME CONCURRENCY ACK_WAIT WORK_SECONDS``."""
    url, name, concurrency, ack_wait, work = argv if argv is not None else sys.argv[1:]
    asyncio.run(_work(url, name, int(concurrency), float(ack_wait), float(work)))


async def _work(url: str, name: str, concurrency: int, ack_wait: float, work: float) -> None:
    broker = open_broker(url)

    async def handle(delivery: Delivery) -> None:
        job = json.loads(delivery.payload)
        await asyncio.sleep(work * 0.3)
        if job["poison"]:
            raise ValueError(POISON_ERROR.partition(": ")[2])
        record = {"id": job["id"], "worker": name, "attempt": delivery.attempt}
        await broker.publish(RESULTS, json.dumps(record).encode())  # the side effect
        await asyncio.sleep(work * 0.7)  # a SIGKILL here makes a duplicate

    consumer = Consumer(
        broker,
        WORK,
        GROUP,
        handle,
        concurrency=concurrency,
        ack_wait=ack_wait,
        max_deliveries=MAX_DELIVERIES,
        backoff=Backoff(0.05, 0.2),
        drain_timeout=10.0,
    )
    try:
        await consumer.run(install_signal_handlers=True)
    finally:
        await broker.aclose()


# ------------------------------------------------------------------------ the run


def _produce(url: str, producer: int, count: int, poison_at: int, pace: float) -> list[str]:
    ids = []
    with Producer(url) as sync:
        for n in range(count):
            job_id = f"p{producer}-{n}"
            body = json.dumps({"id": job_id, "poison": n == poison_at}).encode()
            sync.publish(WORK, body, headers={"job-id": job_id})
            ids.append(job_id)
            time.sleep(pace)
    return ids


async def run_mq_demo(
    *,
    messages: int = 200,
    producers: int = 2,
    concurrency: int = 4,
    ack_wait: float = 1.0,
    kill_after: int = 40,
    work: float = 0.01,
    seed: int = 7,
    give_up_after: float = 60.0,
    on_progress: Callable[[MqDemoResult], object] | None = None,
    on_event: Callable[[str], object] | None = None,
) -> MqDemoResult:
    """Run the scenario on a SQLite file in a temporary directory.

    Returns:
        The tally; ``complete`` says whether every job was accounted for.
    """
    rng = random.Random(seed)
    counts = [messages // producers + (p < messages % producers) for p in range(producers)]
    poison_producer = rng.randrange(producers)
    poison_at = rng.randrange(max(counts[poison_producer], 1))
    with tempfile.TemporaryDirectory(prefix="distsys-mq-demo-") as tmp:
        run = _Run(Path(tmp), concurrency, ack_wait, work, on_event, on_progress)
        run.tally.poison = f"p{poison_producer}-{poison_at}"
        broker = open_broker(run.url)
        try:
            for topic, group in ((WORK, GROUP), (RESULTS, TALLY), (DEAD, TALLY)):
                await broker.create_group(topic, group)  # declared before anyone acks
            run.spawn("victim")
            producing = asyncio.gather(
                *(
                    asyncio.to_thread(
                        _produce, run.url, p, n, poison_at if p == poison_producer else -1, work / 4
                    )
                    for p, n in enumerate(counts)
                )
            )
            result = await run.follow(broker, producing, kill_after, give_up_after)
            return replace(result, survivor_exit=await run.stop_survivor())
        finally:
            await run.kill_all()
            await broker.aclose()


class _Run:
    """One run's worker processes and tally."""

    def __init__(
        self,
        directory: Path,
        concurrency: int,
        ack_wait: float,
        work: float,
        on_event: Callable[[str], object] | None,
        on_progress: Callable[[MqDemoResult], object] | None,
    ) -> None:
        self.directory = directory
        self.url = f"sqlite:///{directory / 'mq.db'}"
        self.worker_args = [str(concurrency), str(ack_wait), str(work)]
        self.ack_wait = ack_wait
        self.tell = on_event if on_event is not None else (lambda text: None)
        self.on_progress = on_progress
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.tally = _Tally()

    def spawn(self, name: str) -> None:
        code = "from distsys.cli._mq_demo import worker_main; worker_main()"
        with open(self.directory / f"{name}.log", "wb") as log:  # the child keeps its copy
            process = subprocess.Popen(
                [sys.executable, "-c", code, self.url, name, *self.worker_args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.processes[name] = process
        self.tell(f"{name} worker started (pid {process.pid})")

    def log_tail(self, name: str) -> str:
        lines = (self.directory / f"{name}.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-3:]) or "(nothing on stderr)"

    async def follow(
        self,
        broker: Broker,
        producing: asyncio.Future[list[list[str]]],
        kill_after: int,
        give_up_after: float,
    ) -> MqDemoResult:
        """Tally results and dead letters; kill the victim and start the survivor on cue."""
        tally, give_up = self.tally, time.monotonic() + give_up_after
        async with (
            broker.subscribe(RESULTS, TALLY, prefetch=64) as results,
            broker.subscribe(DEAD, TALLY) as dead,
        ):
            while True:
                if producing.done() and not tally.published:
                    tally.published = tuple(i for ids in producing.result() for i in ids)
                    self.tell(f"published {len(tally.published)} jobs (one poison: {tally.poison})")
                delivery = await results.receive(timeout=0.05)
                while delivery is not None:
                    tally.count(json.loads(delivery.payload))
                    await delivery.ack()
                    delivery = await results.receive(timeout=0)
                letter = await dead.receive(timeout=0)
                if letter is not None:
                    job = json.loads(letter.payload)["id"]
                    error = letter.headers.get(HEADER_ERROR, "")
                    tally.dead[job] = (error, letter.headers.get(HEADER_ATTEMPTS, "?"))
                    self.tell(f"{job} dead-lettered after {tally.dead[job][1]} deliveries: {error}")
                    await letter.ack()
                if tally.killed_after is None and tally.by_worker["victim"] >= kill_after:
                    self.processes["victim"].kill()
                    tally.killed_after = tally.by_worker["victim"]
                    self.tell(
                        f"victim killed with SIGKILL after handling {tally.killed_after} jobs"
                    )
                    self.spawn("survivor")
                    self.tell(
                        f"the victim's unacked jobs come back after ack_wait ({self.ack_wait:g}s)"
                    )
                snapshot = tally.snapshot()
                if self.on_progress is not None:
                    self.on_progress(snapshot)
                if snapshot.complete:
                    return snapshot
                # A worker that exits by itself (not by our SIGKILL) will not finish the run.
                worker = self.processes.get("survivor", self.processes["victim"])
                if worker.poll() is not None or time.monotonic() > give_up:
                    for name in self.processes:
                        self.tell(f"{name}'s last words: {self.log_tail(name)}")
                    return tally.snapshot(timed_out=True)

    async def stop_survivor(self) -> int | None:
        survivor = self.processes.get("survivor")
        if survivor is None or survivor.poll() is not None:
            return None if survivor is None else survivor.returncode
        self.tell("every job accounted for: stopping the survivor with SIGTERM")
        survivor.terminate()
        code = await asyncio.to_thread(survivor.wait, 30)
        self.tell(f"survivor drained and exited with code {code}")
        if code != 0:
            self.tell(f"survivor's last words: {self.log_tail('survivor')}")
        return code

    async def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            await asyncio.to_thread(process.wait)


class _Tally:
    def __init__(self) -> None:
        self.poison = ""
        self.start = time.monotonic()
        self.published: tuple[str, ...] = ()
        self.handled: Counter[str] = Counter()
        self.by_worker: Counter[str] = Counter()
        self.redelivered = 0
        self.dead: dict[str, tuple[str, str]] = {}
        self.killed_after: int | None = None

    def count(self, record: dict[str, Any]) -> None:
        self.handled[record["id"]] += 1
        self.by_worker[record["worker"]] += 1
        self.redelivered += record["attempt"] > 1

    def snapshot(self, *, timed_out: bool = False) -> MqDemoResult:
        return MqDemoResult(
            published=self.published,
            poison=self.poison,
            handled=dict(self.handled),
            redelivered=self.redelivered,
            by_worker=dict(self.by_worker),
            dead=dict(self.dead),
            victim_killed_after=self.killed_after,
            elapsed=time.monotonic() - self.start,
            timed_out=timed_out,
        )


# ------------------------------------------------------------------- the command


@click.command("mq")
@click.option(
    "--messages",
    type=click.IntRange(2, 100_000),
    default=200,
    show_default=True,
    help="Jobs to publish (one of them poison).",
)
@click.option(
    "--producers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Producer threads, each with its own sync Producer.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Handlers each worker process runs at once.",
)
@click.option(
    "--ack-wait",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="Seconds before an unacked job is delivered again.",
)
@click.option(
    "--kill-after",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Kill the first worker once it has handled this many (at most a third) of the jobs.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Picks the poison job.")
def mq_demo(
    messages: int, producers: int, concurrency: int, ack_wait: float, kill_after: int, seed: int
) -> None:
    """Kill a consumer process mid-work with SIGKILL and show that nothing is lost.

    Producer threads publish jobs to a SQLite-file queue; a worker process handles them
    until it is killed; a second worker takes over, and gets the killed worker's unacked
    jobs once their ack deadline passes. A poison job goes to the dead-letter topic.
    """
    console = Console()
    console.rule(Text.from_markup("[bold]mq[/]: at-least-once delivery through a SIGKILL"))
    kill_after = min(kill_after, max(messages // 3, 1))
    view = _LiveView(messages) if console.is_interactive else None

    def event(text: str) -> None:
        if view is not None:
            view.event(text)
        else:
            console.print(text, highlight=False, markup=False)

    run = run_mq_demo(
        messages=messages,
        producers=producers,
        concurrency=concurrency,
        ack_wait=ack_wait,
        kill_after=kill_after,
        seed=seed,
        on_event=event,
        on_progress=view.update if view is not None else None,
    )
    if view is None:
        result = asyncio.run(run)
    else:
        with Live(console=console, get_renderable=view, refresh_per_second=12, transient=True):
            result = asyncio.run(run)
        for line in view.events:
            console.print(line, highlight=False, markup=False)
    console.print(summary_table(result, ack_wait))
    console.print(explain(result, ack_wait), highlight=False)
    if not result.complete:
        raise click.ClickException(f"{len(result.lost)} job(s) not accounted for")


class _LiveView:
    """The live display: counters from the latest snapshot, and the latest events.

    ``update`` and ``event`` run on the event loop's thread, ``__call__`` on rich's
    refresh thread; they share references to immutable values under a lock.
    """

    def __init__(self, messages: int) -> None:
        self._messages = messages
        self._result = MqDemoResult()
        self._lock = threading.Lock()
        self.events: list[str] = []

    def update(self, result: MqDemoResult) -> None:
        self._result = result

    def event(self, text: str) -> None:
        with self._lock:
            self.events.append(text)

    def __call__(self) -> RenderableType:
        r = self._result
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", style="bold")
        grid.add_column()
        grid.add_column()
        total = len(r.published) or self._messages
        done = len(r.handled) + len(r.dead)
        grid.add_row(
            "accounted",
            ProgressBar(total=total, completed=done, width=_BAR),
            f"{done}/{total} jobs handled or dead-lettered",
        )
        for name in ("victim", "survivor"):
            count = r.by_worker.get(name, 0)
            status = ""
            if name == "victim" and r.victim_killed_after is not None:
                status = " · killed (SIGKILL)"
            grid.add_row(
                name,
                ProgressBar(total=total, completed=count, width=_BAR),
                f"{count} handled{status}",
            )
        grid.add_row("duplicates", "", str(r.duplicates))
        grid.add_row("dead letters", "", str(len(r.dead)))
        with self._lock:
            recent = self.events[-4:]
        for line in recent:
            grid.add_row("", "", Text(line, style="dim"))
        return Panel(grid, title=f"distsys demo mq · {r.elapsed:.1f}s", expand=False)


def summary_table(result: MqDemoResult, ack_wait: float) -> Table:
    """Return the run's accounting as a two-column table."""
    table = Table(title="mq summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    handled = len(result.handled)
    table.add_row("jobs published", f"{len(result.published):,}")
    table.add_row("handled at least once", f"{handled:,}")
    table.add_row("handled twice or more", f"{result.duplicates:,}")
    table.add_row("redeliveries handled", f"{result.redelivered:,}")
    table.add_row("dead-lettered", f"{len(result.dead):,}")
    table.add_row("lost", f"{len(result.lost):,}")
    killed = (
        "not killed"
        if result.victim_killed_after is None
        else (f"killed after {result.victim_killed_after:,}")
    )
    table.add_row("victim handled", f"{result.by_worker.get('victim', 0):,} ({killed})")
    exit_text = "" if result.survivor_exit is None else f" (exit {result.survivor_exit})"
    table.add_row("survivor handled", f"{result.by_worker.get('survivor', 0):,}{exit_text}")
    table.add_row("wall time", f"{result.elapsed:.2f} s (ack_wait {ack_wait:g} s)")
    return table


def explain(result: MqDemoResult, ack_wait: float) -> str:
    """Return a few sentences that account for every job."""
    lines = []
    if result.lost:
        gave_up = f" (gave up waiting after {result.elapsed:.0f} s)" if result.timed_out else ""
        listed = ", ".join(result.lost[:5]) + (", ..." if len(result.lost) > 5 else "")
        lines.append(f"{len(result.lost)} job(s) not accounted for{gave_up}: {listed}.")
    else:
        lines.append(
            f"Nothing was lost: all {len(result.published):,} jobs were handled or dead-lettered."
        )
    if result.victim_killed_after is not None:
        fresh = result.redelivered - result.duplicates
        lines.append(
            f"The victim died holding unacked jobs; after ack_wait ({ack_wait:g} s) the broker "
            f"delivered them again and the survivor handled {result.redelivered:,} "
            f"redeliveries: {fresh:,} the victim had not got to, and {result.duplicates:,} "
            "it had already handled (its result recorded, its ack never sent)."
        )
    elif result.complete:
        lines.append("The victim finished everything before it could be killed.")
    if result.duplicates:
        lines.append(
            f"So {result.duplicates:,} job(s) were handled twice — at-least-once delivery. "
            "An idempotent handler (distsys.mq Deduplicator) would skip the second handling."
        )
    for job, (error, attempts) in sorted(result.dead.items()):
        lines.append(
            f"The poison job {job} was dead-lettered after {attempts} deliveries ({error})."
        )
    return "\n".join(lines)
