"""The object detector's trade-offs: input size (320 / 384 / 512), threads (1 / 2), INT8 quantisation.

    python bench/bench_detector.py [--set DIR] [--rounds 5] [--out results.json]

Accuracy on the real-photo benchmark (`make realphotos`; its realphotos.jsonl gives each picture's
`objects` (COCO names) and `people`): each variant's score threshold is chosen on the FIT half only
(best class-level F1), then every variant is reported on the TEST half at its threshold: labelled
objects found, extra classes (detected but not labelled), people found / false people, and agreement
with the 512 px float detections (same class set; boxes matched by class at IoU >= 0.5). Pictures
are first reduced to a long side of at most 512 px, as the pipeline hands them over.

Speed: images/s of Detector.detect (letter-box, network, decode) on batches of 8 FIT photos, every
variant timed in each round, rounds interleaved (order reversed every other round) so the machine's
other load hits all alike; medians, and the ratio to 512 px float on 2 threads from the same run.

INT8 variants (ONNX Runtime 1.32 quantisation of the converted float graph):
  int8-dynamic          weights only (ConvInteger, uint8 weights), activations quantised at run time
  int8-static           QOperator, every op; per-channel int8 weights (reduce_range), uint8
                        activations, MinMax calibration on 64 letter-boxed variants of the bundled
                        calibration photos (none in the benchmark): the classifier's INT8 recipe
  int8-static-qdq       QDQ format, convolutions only, the two output convolutions (class, box) kept
                        float, 99.99th-percentile calibration: the best of the recipes tried by hand
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.demo import bundled_photo
from autotag.encoders.detector import Detector, letterbox
from autotag.encoders.detector_setup import detector_onnx_path
from autotag.encoders.quantized import CALIBRATION_PHOTOS, augment
from autotag.types import Detection

SIZES = (320, 384, 512)
QUANTS = ("fp32", "int8-dynamic", "int8-static", "int8-static-qdq")
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
REFERENCE = "512 fp32"


def quantized_models(folder: Path) -> dict[str, Path]:
    """The float model and its INT8 copies (built once into `folder`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": detector_onnx_path(), **{q: folder / f"{q}.onnx" for q in QUANTS[1:]}}
    prepared = folder / "prepared.onnx"
    # ORT's pre-processing and calibration write scratch files into the working directory: keep them out
    # of the checkout.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        if not prepared.is_file():  # symbolic shape inference cannot follow the dynamic height/width
            quant_pre_process(str(paths["fp32"]), str(prepared), skip_symbolic_shape=True)
        heads = [n.name for n in onnx.load(str(prepared)).graph.node if "_output/" in n.name]  # cls, wh
        if not paths["int8-dynamic"].is_file():  # uint8 weights: ConvInteger has no int8-weight CPU kernel
            quantize_dynamic(str(prepared), str(paths["int8-dynamic"]), weight_type=QuantType.QUInt8)
        rng = np.random.default_rng(0)
        photos = [bundled_photo(name) for name in CALIBRATION_PHOTOS]
        images = photos + [augment(photos[int(rng.integers(len(photos)))], rng) for _ in range(64 - len(photos))]
        arrays = np.stack([letterbox(im, 512, channels_first=True)[0] for im in images])
        for quant, qdq in (("int8-static", False), ("int8-static-qdq", True)):
            if paths[quant].is_file():
                continue
            batches = iter([arrays[i : i + 8] for i in range(0, len(arrays), 8)])

            class Reader:
                def get_next(self) -> dict[str, np.ndarray] | None:
                    batch = next(batches, None)  # noqa: B023 - consumed before the loop moves on
                    return None if batch is None else {"image": batch}

            quantize_static(
                str(prepared), str(paths[quant]), Reader(),
                quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile if qdq else CalibrationMethod.MinMax,
                op_types_to_quantize=["Conv"] if qdq else None, nodes_to_exclude=heads if qdq else None,
                extra_options={"CalibPercentile": 99.99},
            )  # fmt: skip
    return paths


def load_set(root: Path) -> list[dict]:
    pictures = []
    for line in (root / "realphotos.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            im = Image.open(root / row["path"])
            im.draft("RGB", (512, 512))
            im = im.convert("RGB")
            row["size"] = im.size
            im.thumbnail((512, 512), Image.BILINEAR)  # what the pipeline hands over: long side <= 512
            row["image"] = im
            expected = set(row["objects"])
            if str(row["people"]) != "0":
                expected.add("person")
            row["expected"] = expected
            pictures.append(row)
    return pictures


def detect_all(detector: Detector, pictures: list[dict]) -> list[list[Detection]]:
    out = []
    for i in range(0, len(pictures), 8):
        chunk = pictures[i : i + 8]
        out += detector.detect([p["image"] for p in chunk], [p["size"] for p in chunk])
    return out


def above(found: list[Detection], threshold: float) -> list[Detection]:
    return [d for d in found if d.score >= threshold]


def class_scores(pictures: list[dict], found: list[list[Detection]], threshold: float) -> dict[str, float]:
    """Labelled objects found, extra classes, people found / false people (class level, per picture)."""
    tp = fp = fn = people_found = people_total = false_people = no_people = 0
    for p, dets in zip(pictures, found, strict=True):
        got = {d.label for d in above(dets, threshold)}
        tp, fp, fn = tp + len(got & p["expected"]), fp + len(got - p["expected"]), fn + len(p["expected"] - got)
        if "person" in p["expected"]:
            people_total += 1
            people_found += "person" in got
        else:
            no_people += 1
            false_people += "person" in got
    return {
        "objects_found": tp / max(tp + fn, 1),
        "objects_labelled": tp + fn,
        "extra_classes": fp,
        "precision": tp / max(tp + fp, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "people_found": f"{people_found}/{people_total}",
        "false_people": f"{false_people}/{no_people}",
    }


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def above_all(found: list[list[Detection]], threshold: float) -> list[list[Detection]]:
    return [above(dets, threshold) for dets in found]


def agreement(found: list[list[Detection]], reference: list[list[Detection]]) -> dict[str, float]:
    """How close a variant's detections are to the reference's: same class set per picture, box F1."""
    same, matched, total = 0, 0, 0
    for dets, ref in zip(found, reference, strict=True):
        same += {d.label for d in dets} == {d.label for d in ref}
        used: set[int] = set()
        for d in dets:
            best = max(
                ((iou(d.box, r.box), j) for j, r in enumerate(ref) if r.label == d.label and j not in used),
                default=(0.0, -1),
            )
            if best[0] >= 0.5:
                used.add(best[1])
                matched += 1
        total += len(dets) + len(ref)
    return {"same_classes": same / len(found), "box_f1": 2 * matched / total if total else 1.0}


def speed(variants: dict[str, Detector], pictures: list[dict], rounds: int) -> dict[str, float]:
    """Images/s per variant, interleaved rounds, medians."""
    images, sizes = [p["image"] for p in pictures], [p["size"] for p in pictures]
    times: dict[str, list[float]] = {k: [] for k in variants}
    for detector in variants.values():  # warm-up: first runs allocate
        detector.detect(images[:8], sizes[:8])
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for key in order:
            start = time.perf_counter()
            for i in range(0, len(images), 8):
                variants[key].detect(images[i : i + 8], sizes[i : i + 8])
            times[key].append(len(images) / (time.perf_counter() - start))
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=Path(".cache/realphotos"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-pictures", type=int, default=16)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    paths = quantized_models(detector_onnx_path().parent / f"bench-{detector_onnx_path().stem}")
    pictures = load_set(args.set)
    fit = [p for p in pictures if p["split"] == "fit"]
    test = [p for p in pictures if p["split"] == "test"]
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at start",
        "pictures": {"fit": len(fit), "test": len(test)},
    }
    variants = [f"{size} {quant}" for size in SIZES for quant in QUANTS]
    found: dict[str, list[list[Detection]]] = {}
    for key in variants:
        size, quant = key.split()
        detector = Detector(paths[quant], input_size=int(size), min_score=min(THRESHOLDS))
        found[key] = detect_all(detector, pictures)
        print(f"detected: {key}", flush=True)

    def part_of(key: str, part: list[dict]) -> list[list[Detection]]:
        ids = {p["id"] for p in part}
        return [f for p, f in zip(pictures, found[key], strict=True) if p["id"] in ids]

    # Each variant's score threshold: chosen on FIT only, by class-level F1 (ties: the higher threshold).
    thresholds = {}
    for key in variants:
        sweep = {t: class_scores(fit, part_of(key, fit), t)["f1"] for t in THRESHOLDS}
        thresholds[key] = max(THRESHOLDS, key=lambda t: (round(sweep[t], 6), t))  # noqa: B023
        results.setdefault("fit_f1_by_threshold", {})[key] = sweep
    rows = []
    for key in variants:
        row = {"variant": key, "threshold": thresholds[key]}
        for name, part in (("fit", fit), ("test", test)):
            row[name] = class_scores(part, part_of(key, part), thresholds[key])
            row[name].update(
                agreement(
                    above_all(part_of(key, part), thresholds[key]),
                    above_all(part_of(REFERENCE, part), thresholds[REFERENCE]),
                )
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    results["accuracy"] = rows
    results["test_detections"] = {
        key: {
            p["id"]: [d.to_dict() for d in above(f, thresholds[key])]
            for p, f in zip(test, part_of(key, test), strict=True)
        }
        for key in (REFERENCE, "384 fp32", "320 fp32")
    }

    if not args.skip_speed:
        sample = [p for p in fit if p["kind"] == "photo"][: args.speed_pictures]
        timed = {
            f"{key} t{threads}": Detector(paths[key.split()[1]], input_size=int(key.split()[0]), threads=threads)
            for threads in (1, 2)
            for key in variants
        }
        ips = speed(timed, sample, args.rounds)
        base = ips[f"{REFERENCE} t2"]
        results["speed_img_per_s"] = ips
        for key, value in ips.items():
            print(f"speed {key}: {value:.1f} img/s ({value / base:.2f}x of {REFERENCE} t2)")
        starts = []
        for _ in range(3):  # cold start of the float detector: session + first picture
            begin = time.perf_counter()
            Detector(paths["fp32"], input_size=384).detect([sample[0]["image"]])
            starts.append(time.perf_counter() - begin)
        results["cold_start_s_384_fp32"] = float(np.median(starts))
        print(f"cold start (384 fp32, session + first picture): {np.median(starts):.2f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
