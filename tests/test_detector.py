"""The COCO object detector: the real converted model on real photos, the converter on a small graph."""

from __future__ import annotations

import base64
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from autotag.demo import bundled_photo
from autotag.encoders.detector import (
    Detector,
    coco_classes,
    create_detector,
    letterbox,
    list_detectors,
    object_words,
)
from autotag.encoders.detector_setup import check_package_files, detector_onnx_path, install_detector
from autotag.encoders.tfjs_graph import convert_tfjs_graph, read_tfjs_graph
from autotag.types import AutotagError, Detection


@pytest.fixture(scope="module")
def detector() -> Detector:
    if not detector_onnx_path().is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm missing, so the detector cannot be fetched: apt-get install npm; make setup")
        install_detector()  # what `make setup` does, into the tests' own model cache
    return create_detector("centernet-coco")


def labels(detections: list[Detection]) -> set[str]:
    return {d.label for d in detections}


# ---------------------------------------------------------------- the real model on real photos


def test_people_cup_and_cat_on_the_bundled_photos(detector):
    names = ["astronaut", "camera", "coffee", "chelsea"]
    found = dict(zip(names, detector.detect([bundled_photo(n) for n in names]), strict=True))
    assert "person" in labels(found["astronaut"])
    assert "person" in labels(found["camera"])  # the cameraman
    assert "cup" in labels(found["coffee"])
    assert "cat" in labels(found["chelsea"]) and "dog" not in labels(found["chelsea"])
    assert object_words(found["astronaut"])[0][0] == "1 person"


def test_boxes_lie_inside_the_picture(detector):
    names = ["astronaut", "camera", "coffee", "chelsea", "motorcycle", "grace_hopper", "rocket"]
    images = [bundled_photo(n) for n in names]
    results = detector.detect(images)
    assert sum(map(len, results)) >= 6
    for im, found in zip(images, results, strict=True):
        w, h = im.size
        for d in found:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (d, im.size)
            assert d.label in coco_classes() and detector.min_score <= d.score <= 1


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.mark.parametrize("canvas_size, place", [((1800, 700), (1100, 150)), ((600, 1500), (40, 900))])
def test_boxes_map_back_to_where_the_object_is(detector, canvas_size, place):
    """The cat pasted at a known place on a wide and on a tall canvas: its box must land there (a wrong
    scale, a swapped axis or a forgotten offset would put it elsewhere)."""
    cat = bundled_photo("chelsea").resize((602, 400))
    canvas = Image.new("RGB", canvas_size, (128, 128, 128))
    canvas.paste(cat, place)
    pasted = (place[0], place[1], place[0] + cat.width, place[1] + cat.height)
    cats = [d for d in detector.detect([canvas])[0] if d.label == "cat"]
    assert cats and iou(cats[0].box, pasted) > 0.6, (cats, pasted)


def test_boxes_of_a_downscaled_copy_come_back_in_the_original_pixels(detector):
    full = bundled_photo("coffee")  # 600 x 400
    small = full.resize((300, 200), Image.BILINEAR)
    cup_full = next(d for d in detector.detect([full])[0] if d.label == "cup")
    cup_small = next(d for d in detector.detect([small], original_sizes=[full.size])[0] if d.label == "cup")
    assert iou(cup_full.box, cup_small.box) > 0.85, (cup_full, cup_small)


def test_letterbox_scales_the_long_side_and_pads_with_zeros():
    arr, placement = letterbox(Image.new("RGB", (1000, 500), (200, 10, 30)), 512)
    assert arr.shape == (512, 512, 3) and arr.dtype == np.float32
    assert np.allclose(arr[:256, :, 0], 200) and np.all(arr[256:] == 0)
    back = placement.to_picture(np.array([[0, 0, 512, 256], [100, 50, 700, 900]], np.float32))
    assert np.allclose(back, [[0, 0, 1000, 500], [100 / 0.512, 50 / 0.512, 1000, 500]], atol=0.01)


def test_batched_detection_equals_one_at_a_time(detector):
    images = [bundled_photo("coffee"), bundled_photo("astronaut")]
    together = detector.detect(images)
    alone = [detector.detect([im])[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        assert [d.label for d in a] == [d.label for d in b]
        assert np.allclose([d.box for d in a], [d.box for d in b], atol=0.5)


# ---------------------------------------------------------------- words, names, errors


def test_people_are_counted_and_classes_become_plain_words():
    def person(score: float) -> Detection:
        return Detection("person", score, (0, 0, 10, 10))

    table = Detection("dining table", 0.4, (0, 0, 50, 50))
    assert object_words([person(0.7)]) == [("1 person", 0.7)]
    assert object_words([person(0.5), person(0.6), table]) == [("2 people", 0.6), ("table", 0.4)]
    assert object_words([person(0.5)] * 3)[0] == ("group of people", 0.5)
    assert object_words([Detection("mouse", 0.3, (0, 0, 5, 5))]) == [("computer mouse", 0.3)]
    assert object_words([]) == []


def test_unknown_detector_name_lists_the_valid_ones():
    with pytest.raises(AutotagError, match="unknown detector 'yolo'; valid: centernet-coco"):
        create_detector("yolo")
    assert "centernet-coco" in list_detectors()


def test_missing_model_says_to_run_the_setup(tmp_path):
    with pytest.raises(AutotagError, match="make setup"):
        Detector(tmp_path / "centernet-v1.onnx")


def test_package_files_with_the_wrong_checksum_are_refused(tmp_path):
    for name in ("centernet.json", "centernet.bin", "LICENSE"):
        (tmp_path / name).write_text("not the package")
    with pytest.raises(AutotagError, match="checksum differs"):
        check_package_files(tmp_path)


# ---------------------------------------------------------------- the converter on a small graph


def _node(name: str, op: str, inputs: list[str], **attrs) -> dict:
    return {"name": name, "op": op, "input": inputs, "attr": attrs}


def _ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _str(value: str) -> dict:
    return {"s": base64.b64encode(value.encode()).decode()}


def write_small_graph(folder, rng) -> dict[str, np.ndarray]:
    """A TF.js graph model with the detector's kinds of ops, fp16 weights; returns the weights."""
    weights = {
        "w": rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32),
        "b": rng.normal(0, 0.5, 4).astype(np.float32),
        "dw": rng.normal(0, 0.5, (3, 3, 4, 1)).astype(np.float32),
        "axes": np.array([1, 2], np.int32),
        "size": np.array([8, 8], np.int32),
        "three": np.array(3.0, np.float32),
    }
    fused = {"list": {"s": [_str("BiasAdd")["s"], _str("Relu6")["s"]]}}
    conv = {"strides": _ints(1, 2, 2, 1), "padding": _str("SAME"), "data_format": _str("NHWC")}
    nodes = [
        _node(
            "x",
            "Placeholder",
            [],
            shape={"shape": {"dim": [{"size": "1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}},
        )
    ]
    nodes += [_node(k, "Const", []) for k in weights]
    nodes += [
        _node("c", "_FusedConv2D", ["x", "w", "b"], fused_ops=fused, num_args={"i": "1"}, **conv),
        _node("d", "DepthwiseConv2dNative", ["c", "dw"], **{**conv, "strides": _ints(1, 1, 1, 1)}),
        _node("m", "Mean", ["d", "axes"], keep_dims={"b": True}),
        _node("se", "Mul", ["d", "m"]),
        _node("a", "Add", ["se", "three"]),
        _node("up", "ResizeBilinear", ["a", "size"], align_corners={"b": False}, half_pixel_centers={"b": False}),
        _node("out", "Identity", ["up"]),
    ]  # fmt: skip
    specs, blobs = [], []
    for name, value in weights.items():
        spec = {"name": name, "shape": list(value.shape), "dtype": "float32" if value.dtype == np.float32 else "int32"}
        if value.dtype == np.float32:
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            blobs.append(value.astype("<f2").tobytes())
        else:
            blobs.append(value.astype("<i4").tobytes())
        specs.append(spec)
    (folder / "model.json").write_text(
        json.dumps({"modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["w.bin"], "weights": specs}]})
    )
    (folder / "w.bin").write_bytes(b"".join(blobs))
    return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in weights.items()}


def tf_same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """TF's SAME padding of an NHWC array: the odd pixel goes after."""
    pads = []
    for n in x.shape[1:3]:
        total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads, (0, 0)])


def reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The small graph computed directly in NHWC with numpy, written from TF's op definitions."""
    p = tf_same_pad(x, 3, 2)
    c = np.zeros((1, 4, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            c[0, i, j] = np.einsum("hwc,hwco->o", p[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3], w["w"])
    c = np.clip(c + w["b"], 0, 6)
    p = tf_same_pad(c, 3, 1)
    d = np.zeros_like(c)
    for i in range(4):
        for j in range(4):
            d[0, i, j] = np.einsum("hwc,hwc->c", p[0, i : i + 3, j : j + 3], w["dw"][..., 0])
    a = d * d.mean(axis=(1, 2), keepdims=True) + 3
    up = np.zeros((1, 8, 8, 4), np.float32)  # TF legacy bilinear: source = destination * in / out
    for i in range(8):
        for j in range(8):
            y, xx = i / 2, j / 2
            y0, x0 = int(y), int(xx)
            y1, x1 = min(y0 + 1, 3), min(x0 + 1, 3)
            fy, fx = y - y0, xx - x0
            up[0, i, j] = (a[0, y0, x0] * (1 - fy) * (1 - fx) + a[0, y0, x1] * (1 - fy) * fx
                           + a[0, y1, x0] * fy * (1 - fx) + a[0, y1, x1] * fy * fx)  # fmt: skip
    return up


def test_converter_matches_a_numpy_reference_on_a_small_graph(tmp_path):
    import onnxruntime as ort

    weights = write_small_graph(tmp_path, np.random.default_rng(0))
    graph = read_tfjs_graph(tmp_path / "model.json")
    assert np.array_equal(graph.weights["w"], weights["w"])  # fp16 expanded exactly
    convert_tfjs_graph(tmp_path / "model.json", tmp_path / "small.onnx", {"out": "out"})
    x = np.random.default_rng(1).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    (got,) = ort.InferenceSession(str(tmp_path / "small.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    assert got.shape == (1, 8, 8, 4)
    np.testing.assert_allclose(got, reference(x, weights), atol=1e-4)


def test_converter_takes_the_input_channels_first_when_asked(tmp_path):
    import onnxruntime as ort

    weights = write_small_graph(tmp_path, np.random.default_rng(0))
    convert_tfjs_graph(tmp_path / "model.json", tmp_path / "nchw.onnx", {"out": "out"}, channels_first=True)
    x = np.random.default_rng(1).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "nchw.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 3
    (got,) = session.run(None, {"image": x.transpose(0, 3, 1, 2).copy()})
    np.testing.assert_allclose(got, reference(x, weights), atol=1e-4)  # the output stays NHWC
    canvas, _ = letterbox(Image.new("RGB", (40, 20), (10, 20, 30)), 32, channels_first=True)
    assert canvas.shape == (3, 32, 32) and np.array_equal(canvas.transpose(1, 2, 0), letterbox(
        Image.new("RGB", (40, 20), (10, 20, 30)), 32)[0])


def test_converter_refuses_missing_and_damaged_files(tmp_path):
    write_small_graph(tmp_path, np.random.default_rng(0))
    target = tmp_path / "out.onnx"
    with pytest.raises(AutotagError, match="not found"):
        convert_tfjs_graph(tmp_path / "nothing.json", target, {"out": "out"})
    data = (tmp_path / "w.bin").read_bytes()
    (tmp_path / "w.bin").write_bytes(data[:-10])
    with pytest.raises(AutotagError, match="truncated or damaged"):
        convert_tfjs_graph(tmp_path / "model.json", target, {"out": "out"})
    (tmp_path / "w.bin").unlink()
    with pytest.raises(AutotagError, match="weights missing"):
        convert_tfjs_graph(tmp_path / "model.json", target, {"out": "out"})
    (tmp_path / "model.json").write_text('{"modelTopology": ')
    with pytest.raises(AutotagError, match="not a graph-model JSON"):
        convert_tfjs_graph(tmp_path / "model.json", target, {"out": "out"})
    assert not target.exists()


def write_mobilenet_v3_bits(folder, rng) -> None:
    """A TF.js graph with MobileNetV3's patterns as TF writes them: hard-swish, a squeeze-excite gate
    with a hard-sigmoid, a branch of 6 channels (off ONNX Runtime's block of 8) and a constant factor."""
    weights = {
        "w1": rng.normal(0, 0.5, (3, 3, 3, 16)), "b1": rng.normal(0, 1, 16),
        "w2": rng.normal(0, 0.5, (1, 1, 16, 16)), "b2": rng.normal(0, 1, 16),
        "w3": rng.normal(0, 0.5, (1, 1, 16, 6)), "b3": rng.normal(0, 1, 6),
        "dw": rng.normal(0, 0.5, (3, 3, 6, 1)),
        "w4": rng.normal(0, 0.5, (1, 1, 6, 8)), "b4": rng.normal(0, 1, 8),
        "k": np.array(0.16662598), "three": np.array(3.0), "sixteen": np.array(16.0),
    }  # fmt: skip
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    weights["axes"] = np.array([1, 2], np.int32)

    def conv(name, x, w, b, *fused):
        ops = {"list": {"s": [_str(op)["s"] for op in ("BiasAdd", *fused)]}}
        return _node(name, "_FusedConv2D", [x, w, b], fused_ops=ops, num_args={"i": "1"}, strides=_ints(1, 1, 1, 1),
                     padding=_str("SAME"), data_format=_str("NHWC"))  # fmt: skip

    dims = [{"size": "1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]
    nodes = [_node("x", "Placeholder", [], shape={"shape": {"dim": dims}})] + [_node(k, "Const", []) for k in weights]
    nodes += [
        conv("c1", "x", "w1", "b1"),
        _node("m", "Mul", ["k", "c1"]), _node("a", "AddV2", ["c1", "three"]), _node("r", "Relu6", ["a"]),
        _node("hs", "Mul", ["m", "r"]),
        _node("mean", "Mean", ["hs", "axes"], keep_dims={"b": True}),
        conv("g", "mean", "w2", "b2"),
        _node("ga", "AddV2", ["g", "three"]), _node("gr", "Relu6", ["ga"]), _node("gm", "Mul", ["k", "gr"]),
        _node("se", "Mul", ["hs", "gm"]),
        conv("n1", "se", "w3", "b3", "Relu"),
        _node("n2", "DepthwiseConv2dNative", ["n1", "dw"], strides=_ints(1, 1, 1, 1), padding=_str("SAME"),
              data_format=_str("NHWC")),
        conv("n3", "n2", "w4", "b4"),
        _node("out", "Mul", ["n3", "sixteen"]),
    ]  # fmt: skip
    specs = [{"name": k, "shape": list(v.shape), "dtype": "float32" if v.dtype == np.float32 else "int32"}
             for k, v in weights.items()]  # fmt: skip
    (folder / "model.json").write_text(
        json.dumps({"modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["w.bin"], "weights": specs}]})
    )
    (folder / "w.bin").write_bytes(b"".join(v.tobytes() for v in weights.values()))


def test_simplified_conversion_computes_the_same_with_cheaper_ops(tmp_path):
    import onnx
    import onnxruntime as ort

    write_mobilenet_v3_bits(tmp_path, np.random.default_rng(0))
    outputs = {}
    for simplify in (False, True):
        target = tmp_path / f"simplify-{simplify}.onnx"
        convert_tfjs_graph(tmp_path / "model.json", target, {"out": "out"}, simplify=simplify)
        x = np.random.default_rng(1).uniform(-4, 4, (1, 8, 8, 3)).astype(np.float32)
        (outputs[simplify],) = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(
            None, {"image": x}
        )
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-5, atol=1e-4)
    model = onnx.load(tmp_path / "simplify-True.onnx")
    ops = [n.op_type for n in model.graph.node]
    # hard-swish and hard-sigmoid lost their Add (into convolutions), the mean became a pooling op,
    # the x16 went into the last convolution's weights
    assert "Add" not in ops and "ReduceMean" not in ops and "GlobalAveragePool" in ops
    assert ops.count("Mul") == 2  # hard-swish's x * gate, squeeze-excite's feature map * gate
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    conv_weights = [shapes[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert (8, 16, 1, 1) in conv_weights and (8, 1, 3, 3) in conv_weights and (8, 8, 1, 1) in conv_weights


def reference_peaks(heat: np.ndarray, min_score: float) -> np.ndarray:
    """The TF graph's peak test: a 3x3 max-pool (stride 1, SAME: the border cut off) over the whole map,
    cells equal to it kept, then the score floor."""
    h, w, _ = heat.shape
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    pooled = np.max([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
    peaks = heat * (heat == pooled)
    return np.flatnonzero(peaks.reshape(-1) >= min_score)


@pytest.mark.parametrize("seed", range(5))
def test_peaks_found_above_the_floor_are_the_max_pool_peaks(seed):
    from autotag.encoders.detector import local_peaks

    rng = np.random.default_rng(seed)
    heat = rng.uniform(0, 1, (12, 9, 5)).astype(np.float32)
    heat = np.round(heat * 6) / 6  # plateaus: ties between neighbours, at the border too
    heat[rng.uniform(size=heat.shape) < 0.3] = 0.0
    for floor in (0.05, 0.2, 0.5, 0.99):
        assert np.array_equal(local_peaks(heat, floor), reference_peaks(heat, floor))
    assert local_peaks(np.zeros((4, 4, 2), np.float32), 0.2).size == 0


def test_setup_removes_conversions_made_by_earlier_versions(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm missing, so the detector cannot be fetched: apt-get install npm; make setup")
    old = detector_onnx_path(tmp_path).with_name("centernet-v1.onnx")
    old.parent.mkdir(parents=True)
    old.write_bytes(b"a conversion by an earlier autotag")
    target = install_detector(tmp_path)
    assert target.is_file() and not old.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["LICENSE", "SOURCE.md", target.name]
