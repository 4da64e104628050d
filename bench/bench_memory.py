"""Peak memory (max RSS) and CPU time of whole `autotag tag DIR` processes on big pictures, with the
object detector and with `--no-objects`, for one or more source trees interleaved round by round (so
a before/after comparison sees the same state of a shared machine). CPU time (user + system) is what
a loaded machine inflates least; wall time is printed beside it.

    python bench/bench_memory.py --dir /tmp/big --src /work/main/src --src src [--rounds 3]

Big pictures used in BENCHMARKS.md: every JPEG, PNG and WebP of 8 MP or more in /usr/share/backgrounds
and /usr/share/wallpapers (gnome-backgrounds, lomiri-wallpapers, xfdesktop4-data, desktop-base):
`--collect DIR` copies them there first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

AUTOTAG = str(Path(sys.executable).with_name("autotag"))
ROOTS = (Path("/usr/share/backgrounds"), Path("/usr/share/wallpapers"))
MODES = {"objects": [], "no-objects": ["--no-objects"]}


def collect(folder: Path, min_pixels: int = 8_000_000) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for root in ROOTS:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                with Image.open(path) as im:
                    big = im.width * im.height >= min_pixels
                if big:
                    shutil.copy(path, folder / str(path.relative_to(root.parent)).replace("/", "_"))
                    count += 1
    return count


def run(src: str, folder: Path, flags: list[str]) -> tuple[float, float, float, int]:
    """(peak RSS MB, CPU seconds, wall seconds, output lines) of one `autotag tag` process."""
    env = {**os.environ, "PYTHONPATH": src}
    from autotag.testing.server import run_measured

    start = time.perf_counter()
    proc, peak_mb, cpu = run_measured([AUTOTAG, "tag", str(folder), *flags, "--format", "jsonl"], env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"autotag tag failed with PYTHONPATH={src}")
    return peak_mb, cpu, wall, proc.stdout.count(b"\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--src", action="append", required=True, help="a PYTHONPATH to run autotag from (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--collect", action="store_true", help="first copy the big Debian wallpapers into --dir")
    args = ap.parse_args()
    if args.collect:
        print(f"collected {collect(args.dir)} pictures into {args.dir}")
    n = sum(1 for p in args.dir.iterdir() if p.is_file())
    results: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} at start, "
          f"{os.cpu_count()} cpus, {n} pictures in {args.dir}")
    for r in range(args.rounds):
        order = [(s, m) for s in args.src for m in MODES]
        for src, mode in order if r % 2 == 0 else reversed(order):
            results.setdefault((src, mode), []).append(run(src, args.dir, MODES[mode]))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for (src, mode), rows in results.items():
        rss, cpu, wall = (statistics.median(r[i] for r in rows) for i in range(3))
        print(f"{src} {mode}: peak RSS median {rss:.0f} MB (runs {[round(r[0]) for r in rows]}), CPU "
              f"{cpu / n * 1000:.0f} ms/picture, wall {wall:.1f} s; {rows[0][3]} records")


if __name__ == "__main__":
    main()
