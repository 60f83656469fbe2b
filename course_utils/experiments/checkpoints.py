"""Mid-point checkpoints: a point that trains for hours resumes where a stopped run left it, with the same numbers.

A point of the sweep is written to its results file only when it is finished; C or scratch at 6,000 per class,
with its learning-rate search, takes longer than a working stretch of the machine. So every candidate learning
rate's training state is saved to disk as it trains (at the end of each training call, and between epochs at
most every ``every_s`` seconds): weights, optimizer, History (its best epoch's weights included) and CPU time.

Resuming must give the numbers an uninterrupted run gives. The random streams an epoch uses are shared by every
candidate in the order they trained (the training loader's shuffles and flips; torch's global generator, which
dropout draws from and each candidate's build reseeds). So each saved file also holds those streams' states
after its last epoch, and a resumed run, after reading back what the files hold, restores the latest file's
streams once, before anything new happens (a candidate built or an epoch trained). That is exact as long as
every candidate's file holds its latest state whenever another candidate moves on, which saving at the end of
every training call guarantees. tests/test_sweep.py checks a run stopped at several epochs against one that never
stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def read_saved(folder: Path) -> dict[Path, dict]:
    """Every candidate saved in ``folder`` (one lr_<rate>.pt each), read back as ``Checkpoints.save`` wrote it."""
    return {p: torch.load(p, weights_only=False) for p in sorted(Path(folder).glob("lr_*.pt"))}


class Checkpoints:
    """The saved candidates of one point (``folder``), and the random streams of its training ``loader``."""

    def __init__(self, folder: Path, loader, every_s: float = 120.0):
        self.folder, self.loader, self.every_s = Path(folder), loader, every_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self.last_save = time.monotonic()
        self.saved = {p.name: state for p, state in read_saved(self.folder).items()}
        latest = max(self.saved.values(), key=lambda s: s["step"]) if self.saved else None
        self.step = latest["step"] if latest else 0
        self.pending = latest["streams"] if latest else None  # restored once, before the first new event
        self.resumed_cpu = 0.0  # CPU seconds of the candidates read back (spent by earlier runs)
        self.resumed_wall = 0.0

    def _path(self, lr: float) -> Path:
        return self.folder / f"lr_{lr:g}.pt"

    def has(self, lr: float) -> bool:
        """Whether an earlier run saved a candidate with this learning rate."""
        return self._path(lr).name in self.saved

    def restore(self, candidate) -> bool:
        """Load ``candidate``'s state as an earlier run saved it (weights, optimizer, History, time spent), if any."""
        state = self.saved.pop(self._path(candidate.lr).name, None)  # read once, when the run started
        if state is None:
            return False
        candidate.model.load_state_dict(state["model"])
        candidate.optimizer.load_state_dict(state["optimizer"])
        candidate.history, candidate.wall, candidate.cpu = state["history"], state["wall"], state["cpu"]
        self.resumed_cpu += state["cpu"]
        self.resumed_wall += state["wall"]
        return True

    def resume_streams(self) -> None:
        """Before anything new happens: put the random streams back where the latest saved epoch left them."""
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["torch"])
        self.loader.generator.set_state(self.pending["shuffle"])
        if self.pending["flips"] is not None:
            self.loader.flips.set_state(self.pending["flips"])
        self.pending = None

    def after_epoch(self, candidate, last: bool) -> None:
        """One more epoch trained: save ``candidate`` if it is the ``last`` of its training call, or if ``every_s``
        seconds have passed since the last save."""
        self.step += 1  # counts every epoch, saved or not: the latest file is the one with the highest step
        if last or time.monotonic() - self.last_save >= self.every_s:
            self.save(candidate)

    def save(self, candidate) -> None:
        """Save ``candidate`` with the random streams as they are now, atomically."""
        flips = getattr(self.loader, "flips", None)
        state = {
            "step": self.step,
            "model": candidate.model.state_dict(),
            "optimizer": candidate.optimizer.state_dict(),
            "history": candidate.history,
            "wall": candidate.wall,
            "cpu": candidate.cpu,
            "streams": {
                "torch": torch.get_rng_state(),
                "shuffle": self.loader.generator.get_state(),
                "flips": flips.get_state() if flips is not None else None,
            },
        }
        path = self._path(candidate.lr)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        self.last_save = time.monotonic()
