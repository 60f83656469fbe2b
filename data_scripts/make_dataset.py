#!/usr/bin/env python
"""Turn a folder of your own photos into data/my_pets/{tigger,misty,neither}/ for lesson 02.

    python data_scripts/make_dataset.py SOURCE [--dest data/my_pets] [--classes tigger,misty,neither] [--replace]

SOURCE holds one sub-folder per class (SOURCE/tigger/, SOURCE/misty/, SOURCE/neither/; photos may sit in
deeper folders). Every file is opened and checked (the same check as lesson 02 and the upload widget); readable
photos are copied byte for byte, anything else (.DS_Store, a broken download, an HEIC photo, a text file) is
skipped with the reason. SOURCE is only read, never changed. Nothing in DEST is ever deleted:

* First run: the dataset is assembled in a temporary folder next to DEST and renamed into place when complete.
* Run again (after adding photos to SOURCE): only the new photos are copied; photos already in DEST (same bytes,
  under any name, e.g. uploaded with lesson 02's widget) are not copied twice. No rebuild is needed.
* ``--replace`` rebuilds DEST from SOURCE, for example after you deleted or moved photos in SOURCE. Photos that
  only ever lived in DEST (uploads, files copied by hand) are kept and listed; photos that an earlier run copied
  from SOURCE and that are no longer there are moved to DEST.removed-<time>/ and listed, never deleted.

Renamed files (two photos with one name, photos from sub-folders) and identical duplicates are listed.
Exit status 0 on success, 1 with a message otherwise.
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
