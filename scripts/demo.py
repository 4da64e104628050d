"""`make demo`: write a handful of real photos bundled with scikit-image/scikit-learn to demo_photos/
(plus one generated abstract picture) and tag them with the default model: what is in each picture
(people and objects from the detector, labels from the classifier, in plain words), its colours, and
whether it is a photo or art. `make setup` (a dependency of `make demo`) converts the detector first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.demo import write_photos
from autotag.encoders.detector_setup import SETUP_HINT, detector_onnx_path


def write_abstract(path: Path, width: int = 960, height: int = 540) -> Path:
    """Soft colour waves, made here: a stand-in for the abstract wallpapers people upload."""
    if not path.exists():
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        waves = np.sin(9 * x + 4 * np.sin(5 * y))[..., None]
        top, bottom = np.array([40, 20, 120]), np.array([240, 90, 150])
        pixels = (top + (bottom - top) * (0.5 + 0.5 * waves)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path)
    return path


def main() -> int:
    folder = Path(__file__).resolve().parents[1] / "demo_photos"
    write_photos(folder)
    write_abstract(folder / "waves_generated.png")
    autotag = Path(sys.executable).with_name("autotag")
    args = [str(autotag), "tag", str(folder), "--format", "table"]
    if not detector_onnx_path().is_file():
        print(f"note: the object detector is not set up ({SETUP_HINT}); tagging without people and objects")
        args.append("--no-objects")
    print(f"Tagging the pictures in {folder} ...", flush=True)
    code = subprocess.call(args)
    if code == 0:
        print("\nMore: `autotag tag PHOTOS -f jsonl` keeps boxes, colours and style in their own fields; "
              "`autotag index PHOTOS` then `autotag images --color blue --style photo --object person`.")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
