"""`make demo`: write a handful of real photos bundled with scikit-image/scikit-learn to demo_photos/
and tag them with the embedded default model (exported to ONNX on first use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from autotag.demo import write_photos


def main() -> int:
    folder = Path(__file__).resolve().parents[1] / "demo_photos"
    write_photos(folder)
    print(f"Tagging the photos in {folder} ...", flush=True)
    autotag = Path(sys.executable).with_name("autotag")
    return subprocess.call([str(autotag), "tag", str(folder), "--format", "table"])


if __name__ == "__main__":
    sys.exit(main())
