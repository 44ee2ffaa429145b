"""Go-style concurrency for asyncio and threads.

``Chan`` (buffered or unbuffered channels), ``select`` over several channel operations,
``go`` to start a task or thread, ``WaitGroup`` to wait for them, and ``ErrGroup`` to
run a group that fails fast. Every object works from tasks and threads at once.
"""

from distsys.concurrency._chan import Chan, ChanStatistics
from distsys.concurrency._errgroup import ErrGroup, ErrGroupStatistics
from distsys.concurrency._go import go
from distsys.concurrency._select import DEFAULT, Signal, select, select_blocking
from distsys.concurrency._waitgroup import WaitGroup, WaitGroupStatistics

__all__ = [
    "DEFAULT",
    "Chan",
    "ChanStatistics",
    "ErrGroup",
    "ErrGroupStatistics",
    "Signal",
    "WaitGroup",
    "WaitGroupStatistics",
    "go",
    "select",
    "select_blocking",
]
