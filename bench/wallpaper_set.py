"""Real wallpapers from Debian packages, for the duplicate benchmarks.

Packages: gnome-backgrounds, lomiri-wallpapers(-16.04, -20.04), sway-backgrounds, xfdesktop4-data,
desktop-base (SVGs are drawn with rsvg-convert from librsvg2-bin). One file per distinct picture is an
"original"; the other screen shapes a package ships of the same design (desktop-base themes at 5:4 and
21:9, sway's portrait versions) are kept apart as "recompositions" of it, for the other-crop test.
Rendered pictures are cached under .cache/wallpapers (long side at most 1280 px).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

PACKAGES = (
    "gnome-backgrounds", "lomiri-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
    "sway-backgrounds", "xfdesktop4-data", "desktop-base",
)
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "wallpapers"
LONG_SIDE = 1280
THEMES = Path("/usr/share/desktop-base")
# desktop-base: the wallpaper of each theme; the 16:9 file is the original, these shapes the recompositions
THEME_ORIGINAL = "1920x1080.svg"
THEME_OTHER_SHAPES = ("1280x1024.svg", "2560x1080.svg")


@dataclass(frozen=True)
class Wallpaper:
    name: str  # package folder / file, unique
    path: Path
    family: str  # the design it belongs to (an original and its recompositions share one)


def missing_packages() -> list[str]:
    out = []
    for pkg in PACKAGES:
        ok = subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode == 0
        if not ok:
            out.append(pkg)
    if shutil.which("rsvg-convert") is None:
        out.append("librsvg2-bin")
    return out


def _design_files() -> tuple[list[Wallpaper], list[Wallpaper]]:
    """(originals, recompositions)."""
    originals: list[Wallpaper] = []
    recompositions: list[Wallpaper] = []
    backgrounds = Path("/usr/share/backgrounds")
    for path in sorted(backgrounds.glob("*")):  # lomiri: photographs and the warty wallpaper
        if path.is_file() and not path.is_symlink() and path.suffix in (".jpg", ".png"):
            originals.append(Wallpaper(path.name, path, path.stem))
    for folder in ("gnome", "xfce"):
        for path in sorted((backgrounds / folder).glob("*")):
            originals.append(Wallpaper(f"{folder}/{path.name}", path, f"{folder}/{path.stem}"))
    sway = backgrounds / "sway"
    originals.append(Wallpaper("sway/1920x1080", sway / "Sway_Wallpaper_Blue_1920x1080.png", "sway"))
    for path in sorted(sway.glob("*Portrait.png")):
        recompositions.append(Wallpaper(f"sway/{path.stem}", path, "sway"))
    seen: set[str] = set()
    for theme in sorted(THEMES.glob("*-theme")):
        if theme.is_symlink():  # active-theme points at one of the others
            continue
        images = theme / "wallpaper" / "contents" / "images"
        main = images / THEME_ORIGINAL
        if not main.exists():
            continue
        digest = hashlib.sha256(main.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        originals.append(Wallpaper(f"{theme.name}/{THEME_ORIGINAL}", main, theme.name))
        for shape in THEME_OTHER_SHAPES:
            if (images / shape).exists():
                recompositions.append(Wallpaper(f"{theme.name}/{shape}", images / shape, theme.name))
    return originals, recompositions


def _render(path: Path) -> Image.Image:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    cached = CACHE / f"{key}.png"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".svg":
            tmp = CACHE / f"{key}.svg.png"
            subprocess.run(["rsvg-convert", "-w", str(LONG_SIDE), "-o", str(tmp), str(path)], check=True)
            im = Image.open(tmp).convert("RGBA")
            tmp.unlink()
            if im.height > im.width:
                im = im.resize((round(im.width * LONG_SIDE / im.height), LONG_SIDE), Image.LANCZOS)
        else:
            im = Image.open(path)
            im.draft("RGB", (LONG_SIDE, LONG_SIDE))
            im = im.convert("RGBA")
        # transparent areas shown on black, as a desktop would
        flat = Image.new("RGB", im.size, (0, 0, 0))
        flat.paste(im, mask=im.getchannel("A"))
        flat.thumbnail((LONG_SIDE, LONG_SIDE), Image.LANCZOS)
        flat.save(cached)
    return Image.open(cached).convert("RGB")


def wallpapers() -> tuple[list[tuple[Wallpaper, Image.Image]], list[tuple[Wallpaper, Image.Image]]]:
    """(originals, recompositions) with their pictures; raises SystemExit naming missing packages."""
    missing = missing_packages()
    if missing:
        raise SystemExit(f"install the Debian packages first: apt-get install {' '.join(missing)}")
    originals, recompositions = _design_files()
    return [(w, _render(w.path)) for w in originals], [(w, _render(w.path)) for w in recompositions]


if __name__ == "__main__":
    originals, recompositions = wallpapers()
    print(f"{len(originals)} originals, {len(recompositions)} recompositions")
    for w, im in originals + recompositions:
        print(f"  {w.family:32s} {w.name:50s} {im.size}")
