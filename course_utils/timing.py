"""Wall-clock timing that reads well in a notebook."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Stopwatch:
    """Holds the seconds measured by ``timed``."""

    label: str = ""
    seconds: float = field(default=0.0)


@contextmanager
def timed(label: str = "", verbose: bool = False) -> Iterator[Stopwatch]:
    """``with timed("epoch") as t: ...`` then ``t.seconds``."""
    watch = Stopwatch(label)
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - start
        if verbose:
            print(f"{label or 'elapsed'}: {watch.seconds:.2f} s")
