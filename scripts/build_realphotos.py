"""Build the real-photo benchmark: bench/realphotos/manifest.yaml -> one image file per entry.

The pictures are not in git; the manifest names where each one comes from:

  deb:PACKAGE:/absolute/path      a file installed by a Debian package (installed here when missing and root)
  skimage:NAME                    skimage.data.NAME() (stereo_motorcycle: the left view)
  sklearn:FILE                    sklearn.datasets.load_sample_image(FILE)
  matplotlib:FILE                 matplotlib.cbook.get_sample_data(FILE)

Raster files without transparency are copied byte for byte (so a picture's content hash is the
package's); cut-outs with an alpha channel (tuxpaint stamps) are flattened onto white, and arrays
from Python packages are written as PNG. SVG sources are not rendered (no SVG renderer is assumed).
Next to the images, realphotos.jsonl holds one record per picture (path + every manifest field): the
`realphotos:DIR` dataset reader reads it.

    python scripts/build_realphotos.py [--out .cache/realphotos] [--manifest bench/realphotos/manifest.yaml]
                                       [--check] [--no-install] [--force]

Exit status 1 when any picture could not be built; each problem is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = ROOT / "bench" / "realphotos" / "manifest.yaml"
DEFAULT_OUT = ROOT / ".cache" / "realphotos"
RASTER = {".jpg", ".jpeg", ".png", ".webp"}


def read_manifest(path: Path = DEFAULT_MANIFEST) -> list[dict[str, Any]]:
    """The manifest's entries (a list under `pictures:`); ids must be unique."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = data["pictures"] if isinstance(data, dict) else data
    seen: set[str] = set()
    for e in entries:
        if e["id"] in seen:
            raise SystemExit(f"{path}: id {e['id']!r} appears twice")
        seen.add(e["id"])
    return entries


def debian_packages(entries: list[dict[str, Any]]) -> list[str]:
    return sorted({e["source"].split(":")[1] for e in entries if e["source"].startswith("deb:")})


def install_missing(packages: list[str]) -> list[str]:
    """apt-get install the packages dpkg does not know (only as root); returns those still missing."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing Debian packages: {' '.join(missing)}", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env)
        missing = [p for p in missing if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    return missing


def _flatten(im: Image.Image) -> Image.Image:
    """RGBA / LA / palette-with-transparency -> RGB on white (a cut-out photographed on a white table)."""
    im = im.convert("RGBA")
    canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, im).convert("RGB")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _array_image(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:  # e.g. boolean masks or float images in [0, 1]
        arr = arr.astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo or 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def load_python_source(kind: str, name: str) -> Image.Image:
    """An image shipped inside a Python package."""
    if kind == "skimage":
        import skimage.data

        arr = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            arr = arr[0]
        return _array_image(arr)
    if kind == "sklearn":
        from sklearn.datasets import load_sample_image

        return _array_image(load_sample_image(name))
    if kind == "matplotlib":
        from matplotlib import cbook

        return Image.open(cbook.get_sample_data(name, asfileobj=False))
    raise ValueError(f"unknown source kind {kind!r}; use deb:, skimage:, sklearn: or matplotlib:")


def build_one(entry: dict[str, Any], out: Path) -> Path:
    """Write one picture into `out`; returns its path. Raises ValueError/OSError with the reason."""
    source: str = entry["source"]
    kind, _, rest = source.partition(":")
    if kind == "deb":
        _package, _, file_path = rest.partition(":")
        src = Path(file_path)
        if src.suffix.lower() not in RASTER:
            raise ValueError(f"{src.suffix} is not a raster format this script renders")
        if not src.is_file():
            raise ValueError(f"{src} not found (is the package installed?)")
        with Image.open(src) as im:
            if not _has_alpha(im):
                target = out / f"{entry['id']}{src.suffix.lower()}"
                shutil.copyfile(src, target)
                return target
            flat = _flatten(im)
    else:
        im = load_python_source(kind, rest)
        flat = _flatten(im) if _has_alpha(im) else im.convert("RGB") if im.mode not in ("RGB", "L") else im
    target = out / f"{entry['id']}.png"
    flat.save(target, optimize=False)
    return target


def previous_build(out: Path) -> dict[str, dict[str, Any]]:
    """id -> row of the last build's index, so unchanged pictures are not copied again (labels are
    always rewritten from the manifest)."""
    index = out / "realphotos.jsonl"
    if not index.is_file():
        return {}
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r for r in rows if "id" in r and "source" in r and "path" in r}


def record(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    return {"path": path.name, **entry}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="only verify that every built file exists")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")
    ap.add_argument("--force", action="store_true", help="rebuild every picture, even those built before")
    args = ap.parse_args(argv)
    entries = read_manifest(args.manifest)
    out: Path = args.out
    problems: list[str] = []
    if args.check:
        index = out / "realphotos.jsonl"
        built = {json.loads(line)["id"]: line for line in index.read_text().splitlines()} if index.is_file() else {}
        for e in entries:
            files = list(out.glob(f"{e['id']}.*"))
            if e["id"] not in built or not files:
                problems.append(f"{e['id']}: not built in {out}; run scripts/build_realphotos.py")
    else:
        packages = debian_packages(entries)
        still_missing = [] if args.no_install else install_missing(packages)
        for p in still_missing:
            problems.append(f"Debian package {p} is not installed (needs root and apt-get); its pictures are skipped")
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        built = {} if args.force else previous_build(out)
        for e in entries:
            try:
                done = built.get(e["id"])
                reuse = done is not None and done["source"] == e["source"] and (out / done["path"]).is_file()
                rows.append(record(e, out / done["path"] if reuse else build_one(e, out)))
            except (ValueError, OSError, AttributeError, ImportError) as exc:
                problems.append(f"{e['id']}: {e['source']}: {exc}")
        with (out / "realphotos.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        kinds = [r.get("kind") for r in rows]
        print(
            f"built {len(rows)} of {len(entries)} pictures in {out} "
            f"({kinds.count('photo')} photos, {kinds.count('art')} art)"
        )
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
