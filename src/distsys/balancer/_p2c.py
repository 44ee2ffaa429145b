"""P2CEWMABalancer: the power of two choices over a time-decayed latency average.

The idea of go-zero's ``p2c_ewma`` picker (after Finagle's): draw two distinct
instances at random and send the request to the one with the lower *load*::

    load = (ewma + 1 µs) * (outstanding + 1) / weight

``ewma`` is the instance's moving average of response time in seconds, ``outstanding``
its requests in flight from this balancer; the microsecond keeps outstanding counts
meaningful when latencies are too small to measure. Two random choices, not the global
minimum, so that many clients with slightly stale views do not all stampede to the
same instance, while the load still concentrates on the fast ones (Mitzenmacher's power
of two choices).

The average decays with *time*, not with the number of samples: a response of latency
``x`` arriving ``dt`` seconds after the previous one gives
``ewma = ewma * w + x * (1 - w)`` with ``w = exp(-dt / decay)``. The estimate thus
reflects roughly the last ``decay`` seconds however fast requests come, and a response
after a long silence nearly replaces it.

The algorithm is in ``_p2c_core``, compiled by mypyc like the rest of the balancer's
per-request path; this module is its public face, with the argument types declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from random import Random

from distsys.balancer._p2c_core import P2CEWMACore
from distsys.clock import Clock
from distsys.registry import Instance

__all__ = ["P2CEWMABalancer"]


class P2CEWMABalancer(P2CEWMACore):
    """Power of two choices over latency EWMA and requests in flight (go-zero's p2c).

    A pick draws two distinct eligible instances at random (with two there is no draw;
    with one, it is chosen) and takes the one with the lower
    ``(ewma + 1e-6) * (outstanding + 1) / weight`` (see the module docs; the first
    drawn among equals). Finishing the pick with ``done()`` feeds its latency, measured
    on ``clock`` from the pick, into the instance's EWMA.

    - **Decay**: the EWMA's time constant is ``decay`` seconds (default 10, Finagle's
      and go-zero's).
    - **Errors**: ``done(error=True)`` feeds ``latency + error_penalty`` instead, so an
      instance that fails fast does not look fast and attract all traffic.
    - **A chance for the neglected**: if the worse of the two drawn has not been picked
      for ``force_after`` seconds (default 1, as go-zero), it is picked anyway, so a
      slow instance keeps being measured and is used again once it recovers.
    - **New instances** start *neutral*: until their first response they are scored
      with the mean EWMA of the instances that have one (neither flooded nor starved),
      and their first response sets their EWMA outright. ``initial_latency=x`` starts
      them at ``x`` seconds instead: high to ramp them up gently, 0 to try them at once.
    - ``abandon()`` (and cancellation) releases the outstanding count without a sample.

    Thread-safe (see :class:`Balancer`).

    Args:
        decay: the EWMA's time constant, seconds > 0.
        force_after: seconds after which an instance not picked is picked when drawn.
        error_penalty: seconds added to a failed request's latency, >= 0.
        initial_latency: None (neutral start), or the EWMA new instances start with.
    """

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        decay: float = 10.0,
        force_after: float = 1.0,
        error_penalty: float = 1.0,
        initial_latency: float | None = None,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            instances,
            decay=decay,
            force_after=force_after,
            error_penalty=error_penalty,
            initial_latency=initial_latency,
            service=service,
            clock=clock,
            rng=rng,
            panic_threshold=panic_threshold,
        )
