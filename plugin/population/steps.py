"""Where a population scan's time goes: each step's wall and CPU seconds, logged at DEBUG
(``dxsafety -v scan``) and summed per step by ``bench/scan_bench.py``.

CPU as well as wall, because the throughput targets are CPU budgets: on two cores, 200,000
resources/s leaves 10 CPU-microseconds per resource for the whole scan, and a step that keeps
both cores busy and one that holds one core look alike in wall time. CPU is the process's
(every DuckDB thread; not the ranker's worker processes). Nothing is measured unless DEBUG
is on for this logger, so a scan without ``-v`` pays nothing.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LINE", "step"]

log = logging.getLogger(__name__)

# the message the bench parses: step NAME: WALL s wall, CPU s cpu
LINE = r"step (?P<name>\S+): (?P<wall>[0-9.]+) s wall, (?P<cpu>[0-9.]+) s cpu"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log ``name``'s wall and CPU seconds when the block ends (DEBUG only)."""
    if not log.isEnabledFor(logging.DEBUG):
        yield
        return
    wall0, cpu0 = time.perf_counter(), _cpu()
    try:
        yield
    finally:
        log.debug(
            "step %s: %.3f s wall, %.3f s cpu", name, time.perf_counter() - wall0, _cpu() - cpu0
        )
