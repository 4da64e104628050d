"""Real photos reachable offline (scikit-image and scikit-learn bundle them), for the demo and tests."""

from __future__ import annotations

from pathlib import Path

PHOTO_NAMES = (
    "chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower", "hubble_deep_field",
    "immunohistochemistry", "camera",
)  # fmt: skip


def _photo(name: str):  # -> numpy array, RGB or greyscale
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def write_photos(folder: Path, names: tuple[str, ...] = PHOTO_NAMES) -> dict[str, Path]:
    """Write the bundled photos as JPEGs into `folder` (once); returns name -> path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(_photo(name)).convert("RGB").save(path, quality=92)
        out[name] = path
    return out
