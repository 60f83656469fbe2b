"""Wall-clock and CPU timing that reads well in a notebook and holds up on a shared machine."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Stopwatch:
    """What ``timed`` measured: wall-clock ``seconds`` and this process's ``cpu_seconds``.

    On a shared machine the wall clock also counts time spent waiting for other people's processes; with one
    torch thread on the CPU, process CPU time counts only this work, so ratios of CPU times are steadier.
    """

    label: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _synchronize_cuda() -> None:
    """Wait for queued GPU work, so that it is counted where it was launched (no-op without CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def timed(label: str = "", verbose: bool = False) -> Iterator[Stopwatch]:
    """``with timed("epoch") as t: ...`` then ``t.seconds`` (wall clock) and ``t.cpu_seconds``."""
    watch = Stopwatch(label)
    _synchronize_cuda()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield watch
    finally:
        _synchronize_cuda()
        watch.seconds = time.perf_counter() - wall
        watch.cpu_seconds = time.process_time() - cpu
        if verbose:
            print(f"{label or 'elapsed'}: {watch.seconds:.2f} s")
