#!/usr/bin/env python
"""Turn a folder of your own photos into data/my_pets/{tigger,misty,neither}/ for lesson 02.

    python data_scripts/make_dataset.py SOURCE [--dest data/my_pets] [--classes tigger,misty,neither] [--replace]

The front door of course_utils.photo_dataset, which does the work and says what it does (``--help`` prints it):
SOURCE is only read, nothing in DEST is ever deleted, photos already there are not copied twice.
"""

from __future__ import annotations

import sys

try:
    from course_utils.photo_dataset import DEFAULT_CLASSES, MANIFEST, DatasetError, Report, main, make_dataset
except ImportError as exc:  # run with a Python that does not have the course installed
    sys.exit(
        f"make_dataset.py needs the course's package ({exc}). Run it with the course's Python, "
        "e.g. .venv/bin/python data_scripts/make_dataset.py SOURCE (Windows: .venv\\Scripts\\python), "
        'or install the package first: pip install -e ".[test]"'
    )

__all__ = ["DEFAULT_CLASSES", "MANIFEST", "DatasetError", "Report", "make_dataset", "main"]

if __name__ == "__main__":
    sys.exit(main())
