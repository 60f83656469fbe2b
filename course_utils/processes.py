"""Process trees (via psutil): find, check and stop a server or kernel and everything it started."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...); empty if ``pid`` is gone."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # access denied: it exists
        return True


def group_alive(pgid: int) -> bool:
    """True while any process of the process group exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL every descendant (kernels may run in sessions of their own), then the process's group."""
    for pid in descendants(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        process.kill()
