"""Grade a class in parallel: a few submissions at a time, each in its own sandbox, results in a fixed order.

``run_all`` runs one task per submission on ``jobs`` worker threads (each task starts and supervises its own
sandboxed processes, so threads are enough), logs a line when a task starts and when it ends, and returns
the results in the order of the tasks: the report of ``--jobs 4`` is the report of ``--jobs 1``. A task that
raises gets the rows of ``failed(index, exception)`` instead; Ctrl-C stops the sandboxes still running and
returns what had finished before it (the rest None), so that the report of the graded part can be written.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from . import sandbox


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_jobs(memory_per_submission_gb: float) -> int:
    """Submissions to grade at once: the cores available, at most as many as the free memory holds at the limit."""
    available_gb = psutil.virtual_memory().available / 1024**3
    by_memory = int(available_gb // max(memory_per_submission_gb, 0.1))
    return max(1, min(available_cores(), by_memory))


@dataclass
class Outcome:
    """What a batch gave: one result per task (None where it never ran), and whether Ctrl-C stopped it."""

    results: list = field(default_factory=list)
    interrupted: bool = False


def run_all(
    tasks: list[Callable[[], object]],
    jobs: int,
    names: list[str],
    log: Callable[[str], None],
    failed: Callable[[int, BaseException], object],
    summary: Callable[[object], str] = str,
) -> Outcome:
    """Run ``tasks`` with at most ``jobs`` at once; results in task order. ``names`` label the progress lines."""
    outcome = Outcome([None] * len(tasks))
    lock = threading.Lock()
    counts = {"started": 0, "done": 0}
    total = len(tasks)

    def say(line: str) -> None:
        """One whole line to the log, never interleaved with another thread's."""
        with lock:
            log(line)

    def run(index: int):
        """Run one task, with its progress lines; the grader's own failure becomes ``failed``'s rows."""
        with lock:
            counts["started"] += 1
            number = counts["started"]
        say(f"[{number}/{total}] {names[index]} ...")
        try:
            result = tasks[index]()
        except Exception as exc:  # the grader's own failure on one submission: a row, and the batch goes on
            say(f"    {names[index]}: the grader failed ({type(exc).__name__}: {exc}); the batch goes on")
            result = failed(index, exc)
        with lock:
            counts["done"] += 1
            done = counts["done"]
        say(f"    done {done}/{total}: {names[index]}: {summary(result)}")
        return result

    pool = futures.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    running = {pool.submit(run, index): index for index in range(total)}
    try:
        while running:
            finished, _ = futures.wait(running, timeout=0.5, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                outcome.results[running.pop(future)] = future.result()
    except KeyboardInterrupt:
        outcome.interrupted = True
        say("interrupted: stopping the runs still going; the report keeps what finished")
        pool.shutdown(wait=False, cancel_futures=True)
        sandbox.stop_all()  # the runs stopped here are left out: they would read as crashed
        futures.wait(running, timeout=30)
    finally:
        pool.shutdown(wait=not outcome.interrupted)
    return outcome
