"""COURSE_PROFILE=quick|full: how big each lesson's runs are."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")
PROFILES = ("quick", "full")
DEFAULT_PROFILE = "full"


def course_profile() -> str:
    """The active profile: $COURSE_PROFILE (quick for tests and lectures, full for students)."""
    name = os.environ.get("COURSE_PROFILE", DEFAULT_PROFILE).strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"COURSE_PROFILE={name!r} is not a profile; use one of {', '.join(PROFILES)} "
            "(quick: tests and lectures, a few minutes at most per notebook on 2 cores; full: the student runs)."
        )
    return name


def pick(quick: T, full: T, profile: str | None = None) -> T:
    """Return the value for the active profile, e.g. ``N_PER_CLASS = pick(quick=20, full=200)``."""
    return quick if (profile or course_profile()) == "quick" else full
