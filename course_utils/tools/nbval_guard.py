"""pytest plugin for the grader: an nbval cell fails at once when its kernel dies, instead of waiting out the timeout.

nbval waits for a cell's reply for the whole cell timeout even when the kernel process is gone (a
notebook that calls ``os._exit``, runs out of memory or segfaults). Loaded with ``-p course_utils.tools.nbval_guard``.
"""

from __future__ import annotations

import time
from queue import Empty

from nbval.kernel import RunningKernel

POLL_SECONDS = 1.0
_original_get_message = RunningKernel.get_message


class KernelDied(RuntimeError):
    """The kernel process ended while a cell was running."""


def _get_message(self, stream, timeout=None):
    """RunningKernel.get_message that checks every second that the kernel is still alive."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
        try:
            return _original_get_message(self, stream, timeout=step)
        except Empty:
            if not self.is_alive():
                raise KernelDied("Kernel died while running this cell (os._exit, out of memory, or a crash)") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise


RunningKernel.get_message = _get_message
