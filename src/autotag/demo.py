"""Real photos reachable offline (scikit-image and scikit-learn bundle them), for the demo and tests."""

from __future__ import annotations

from pathlib import Path

PHOTO_NAMES = (
    "chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower", "hubble_deep_field",
    "immunohistochemistry", "camera",
)  # fmt: skip


def bundled_photo(name: str):  # -> PIL.Image.Image, RGB
    """A bundled real photo by name: scikit-image's (``data.<name>``; "motorcycle" is the left view of
    its stereo pair, "motorcycle_left" / "motorcycle_right" either), scikit-learn's "china" and "flower",
    or matplotlib's "grace_hopper"."""
    from PIL import Image

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{name}.jpg")).convert("RGB")
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            return Image.open(f).convert("RGB")
    from skimage import data

    if name.startswith("motorcycle"):
        arr = data.stereo_motorcycle()[1 if name.endswith("right") else 0]
    else:
        arr = getattr(data, name)()
    if arr.dtype == bool:
        arr = arr.astype("uint8") * 255
    return Image.fromarray(arr).convert("RGB")


def write_photos(folder: Path, names: tuple[str, ...] = PHOTO_NAMES) -> dict[str, Path]:
    """Write the bundled photos as JPEGs into `folder` (once); returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        path = folder / f"{name}.jpg"
        if not path.exists():
            bundled_photo(name).save(path, quality=92)
        out[name] = path
    return out
