"""Convert a TF.js graph model (model.json + weight shards) to ONNX with numpy and onnx only.

TensorFlow and tf2onnx are heavy and their TF.js route fails on the detector's graph, while the graph
itself uses a handful of op types. This reads the JSON graph and the weight manifest (fp16-packed
weights expanded to float32) and maps each TF op to ONNX nodes. Activations are kept NCHW inside the
ONNX graph (ONNX's convolution layout); every output keeps TF's NHWC layout, and so does the input
unless asked for NCHW, so the ONNX model answers exactly what the TF.js model answers. Height, width
and batch stay dynamic.

Only what the converted models need is supported; anything else is a clear error naming the op.
`onnx` is imported inside the functions: only the one-time set-up needs it, never the tagger.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}
_PLAIN_DTYPES = {"float32": "<f4", "int32": "<i4", "bool": "?"}


@dataclass
class TfjsGraph:
    nodes: dict[str, dict[str, Any]]  # node name -> the node's JSON (op, input, attr)
    weights: dict[str, np.ndarray]  # constant name -> value, fp16 weights expanded to float32


def read_tfjs_graph(model_json: Path) -> TfjsGraph:
    """Parse model.json and decode its weight shards (paths relative to the JSON file)."""
    model_json = Path(model_json)
    try:
        spec = json.loads(model_json.read_text())
        topology, manifest = spec["modelTopology"], spec["weightsManifest"]
        nodes = {n["name"]: n for n in topology["node"]}
    except FileNotFoundError:
        raise AutotagError(f"TF.js model {model_json} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AutotagError(f"TF.js model {model_json} is not a graph-model JSON file ({exc!r})") from None
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        shard_paths = [model_json.parent / p for p in group["paths"]]
        missing = [str(p) for p in shard_paths if not p.is_file()]
        if missing:
            raise AutotagError(f"TF.js weights missing: {', '.join(missing)}")
        data = b"".join(p.read_bytes() for p in shard_paths)
        offset = 0
        for w in group["weights"]:
            quant = w.get("quantization")
            if quant is None and w["dtype"] in _PLAIN_DTYPES:
                stored = _PLAIN_DTYPES[w["dtype"]]
            elif quant is not None and quant.get("dtype") == "float16" and w["dtype"] == "float32":
                stored = "<f2"  # fp16 in the file, float32 in the graph
            else:
                raise AutotagError(f"TF.js weight {w['name']}: encoding {w['dtype']}/{quant} is not supported")
            count = math.prod(w["shape"])
            size = count * np.dtype(stored).itemsize
            if offset + size > len(data):
                raise AutotagError(
                    f"TF.js weights {', '.join(group['paths'])} hold {len(data)} bytes but the manifest needs "
                    f"more: the files are truncated or damaged; fetch them again"
                )
            raw = np.frombuffer(data, stored, count, offset)
            weights[w["name"]] = raw.astype(np.float32 if w["dtype"] == "float32" else raw.dtype).reshape(w["shape"])
            offset += size
        if offset != len(data):
            raise AutotagError(
                f"TF.js weights {', '.join(group['paths'])} hold {len(data)} bytes, the manifest describes "
                f"{offset}: the files do not belong to this model.json; fetch them again"
            )
    return TfjsGraph(nodes, weights)


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    """A node attribute as a plain Python value (TF.js JSON wraps each in a typed field)."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "b" in value:
        return bool(value["b"])
    if "f" in value:
        return float(value["f"])
    return default


class _Builder:
    """Walks the TF graph from the wanted outputs and emits ONNX nodes, activations in NCHW."""

    def __init__(self, graph: TfjsGraph, channels_first: bool = False) -> None:
        from onnx import helper, numpy_helper

        self.channels_first = channels_first
        self.helper, self.numpy_helper = helper, numpy_helper
        self.graph = graph
        self.nodes: list[Any] = []
        self.arrays: dict[str, np.ndarray] = {}  # ONNX initializer name -> value
        self.inputs: list[Any] = []
        # TF tensor name -> ONNX name and static spatial size (H, W) at the declared input size;
        # constants are kept as numpy values until an op needs them in its own layout.
        self.tensors: dict[str, tuple[str, tuple[int, int]]] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._count = 0
        self._tf_node = ""  # the TF node being converted: its name prefixes the ONNX names made for it

    def fresh(self, hint: str) -> str:
        """A unique ONNX name that still says which TF node it came from (e.g. to exclude a layer from
        quantisation by name)."""
        self._count += 1
        return f"{self._tf_node}/{hint}__{self._count}" if self._tf_node else f"{hint}__{self._count}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.arrays[name] = np.ascontiguousarray(value)
        return name

    def emit(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def value(self, ref: str) -> tuple[str, tuple[int, int]] | np.ndarray:
        """A TF input reference ("name" or "name:0") -> its converted tensor or constant value."""
        name, _, index = ref.lstrip("^").partition(":")
        if index not in ("", "0"):
            raise AutotagError(f"TF.js graph: output {ref} of a multi-output op is not supported")
        if name not in self.tensors and name not in self.constants:
            raise AutotagError(f"TF.js graph: {name} is used before it is computed (a cycle?)")
        return self.constants[name] if name in self.constants else self.tensors[name]

    def activation(self, ref: str) -> tuple[str, tuple[int, int]]:
        v = self.value(ref)
        if isinstance(v, np.ndarray):
            raise AutotagError(f"TF.js graph: {ref} is a constant where an activation was expected")
        return v

    def convert_upto(self, outputs: list[str]) -> None:
        """Convert every node the outputs depend on, inputs before their users (no recursion: the
        graphs are hundreds of nodes deep)."""
        done: set[str] = set()
        stack = [(name, False) for name in reversed(outputs)]
        while stack:
            name, inputs_ready = stack.pop()
            if name in done:
                continue
            if inputs_ready:
                self.convert(name)
                done.add(name)
                continue
            if name not in self.graph.nodes:
                raise AutotagError(f"TF.js graph: no node named {name!r}")
            stack.append((name, True))
            for ref in reversed(self.graph.nodes[name].get("input", [])):
                dependency = ref.lstrip("^").partition(":")[0]
                if dependency not in done:
                    stack.append((dependency, False))

    def convert(self, name: str) -> None:
        node = self.graph.nodes.get(name)
        if node is None:
            raise AutotagError(f"TF.js graph: no node named {name!r}")
        op, inputs = node["op"], node.get("input", [])
        if op == "Const":
            if name not in self.graph.weights:
                raise AutotagError(f"TF.js graph: constant {name} has no weights in the manifest")
            self.constants[name] = self.graph.weights[name]
            return
        handler = getattr(self, f"op_{op.lstrip('_')}", None)
        if handler is None:
            raise AutotagError(f"TF.js graph: op {op} (node {name}) is not supported by the converter")
        self._tf_node = name
        self.tensors[name] = handler(node, inputs)
        self._tf_node = ""

    # ---------------------------------------------------------------- ops

    def op_Placeholder(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        dims = [int(d.get("size", -1)) for d in node["attr"]["shape"]["shape"]["dim"]]
        if len(dims) != 4 or dims[1] <= 0 or dims[2] <= 0:
            raise AutotagError(f"TF.js graph: input {node['name']} must be NHWC with a fixed size, got {dims}")
        if self.channels_first:
            self.inputs.append(self.helper.make_tensor_value_info("image", 1, ["batch", dims[3], "height", "width"]))
            return "image", (dims[1], dims[2])
        self.inputs.append(self.helper.make_tensor_value_info("image", 1, ["batch", "height", "width", dims[3]]))
        return self.emit("Transpose", ["image"], "image_nchw", perm=[0, 3, 1, 2]), (dims[1], dims[2])

    def op_Identity(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self.activation(inputs[0])

    def _conv(self, node: dict[str, Any], inputs: list[str], depthwise: bool) -> tuple[str, tuple[int, int]]:
        x, (h, w) = self.activation(inputs[0])
        kernel = self.value(inputs[1])
        if not isinstance(kernel, np.ndarray):
            raise AutotagError(f"TF.js graph: {node['name']} has a non-constant filter")
        kh, kw = kernel.shape[:2]
        if depthwise:  # TF [kh, kw, C, M] -> ONNX [C*M, 1, kh, kw], one group per input channel
            c, m = kernel.shape[2:]
            weight, group = kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw), c
        else:  # TF HWIO -> ONNX OIHW
            weight, group = kernel.transpose(3, 2, 0, 1), 1
        fused = _attr(node, "fused_ops", [])
        if node["op"].startswith("_Fused") or node["op"].startswith("Fused"):
            if not fused or fused[0] != "BiasAdd" or _attr(node, "num_args", 1) != 1:
                raise AutotagError(f"TF.js graph: {node['name']} fuses {fused}; only BiasAdd[+activation] works")
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise AutotagError(f"TF.js graph: {node['name']} is not NHWC")
        strides = _attr(node, "strides", [1, 1, 1, 1])[1:3]
        dilations = _attr(node, "dilations", [1, 1, 1, 1])[1:3] or [1, 1]
        padding = _attr(node, "padding")
        args = [x, self.const(weight.astype(np.float32), "w")]
        if fused:
            bias = self.value(inputs[2])
            if not isinstance(bias, np.ndarray):
                raise AutotagError(f"TF.js graph: {node['name']} has a non-constant bias")
            args.append(self.const(bias.astype(np.float32).reshape(-1), "b"))
        attrs: dict[str, Any] = {
            "kernel_shape": [kh, kw], "strides": strides, "dilations": dilations, "group": group,
        }  # fmt: skip
        if padding == "SAME":  # TF puts the odd pixel of padding after: ONNX's SAME_UPPER
            attrs["auto_pad"] = "SAME_UPPER"
            size = (math.ceil(h / strides[0]), math.ceil(w / strides[1]))
        elif padding == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
            eff = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilations, strict=True)]
            size = (math.ceil((h - eff[0] + 1) / strides[0]), math.ceil((w - eff[1] + 1) / strides[1]))
        else:
            raise AutotagError(f"TF.js graph: {node['name']} padding {padding!r} is not supported")
        out = self.emit("Conv", args, "conv", **attrs)
        return self._activate(out, fused[1:], node["name"]), size

    def _activate(self, x: str, activations: list[str], where: str) -> str:
        for act in activations:
            if act == "Relu":
                x = self.emit("Relu", [x], "relu")
            elif act == "Relu6":
                x = self._relu6(x)
            else:
                raise AutotagError(f"TF.js graph: {where} fuses activation {act}, not supported")
        return x

    def _relu6(self, x: str) -> str:
        lo, hi = self.const(np.float32(0), "zero"), self.const(np.float32(6), "six")
        return self.emit("Clip", [x, lo, hi], "relu6")

    def op_FusedConv2D(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._conv(node, inputs, depthwise=False)

    op_Conv2D = op_FusedConv2D

    def op_DepthwiseConv2dNative(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._conv(node, inputs, depthwise=True)

    op_FusedDepthwiseConv2dNative = op_DepthwiseConv2dNative

    def _binary(self, onnx_op: str, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        a, b = self.value(inputs[0]), self.value(inputs[1])
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            raise AutotagError(f"TF.js graph: {node['name']} has only constant inputs (not supported)")
        sizes = [v[1] for v in (a, b) if not isinstance(v, np.ndarray)]
        size = (max(s[0] for s in sizes), max(s[1] for s in sizes))  # broadcasting, e.g. squeeze-excite
        names = [self._nchw_const(v) if isinstance(v, np.ndarray) else v[0] for v in (a, b)]
        return self.emit(onnx_op, names, onnx_op.lower()), size

    def _nchw_const(self, value: np.ndarray) -> str:
        """A constant broadcast against NCHW activations: scalars stay, per-channel vectors and NHWC
        tensors move their channel axis to the front."""
        value = value.astype(np.float32)
        if value.ndim == 1:
            value = value.reshape(-1, 1, 1)
        elif value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim != 0:
            raise AutotagError(f"TF.js graph: a rank-{value.ndim} constant operand is not supported")
        return self.const(value, "k")

    def op_Add(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._binary("Add", node, inputs)

    op_AddV2 = op_Add

    def op_Sub(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._binary("Sub", node, inputs)

    def op_Mul(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._binary("Mul", node, inputs)

    def op_Equal(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        return self._binary("Equal", node, inputs)

    def op_Cast(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        if node["attr"]["DstT"]["type"] != "DT_FLOAT":
            raise AutotagError(f"TF.js graph: {node['name']} casts to a type other than float")
        x, size = self.activation(inputs[0])
        return self.emit("Cast", [x], "cast", to=1), size

    def op_Relu(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, size = self.activation(inputs[0])
        return self.emit("Relu", [x], "relu"), size

    def op_Relu6(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, size = self.activation(inputs[0])
        return self._relu6(x), size

    def op_Sigmoid(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, size = self.activation(inputs[0])
        return self.emit("Sigmoid", [x], "sigmoid"), size

    def op_Mean(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, (h, w) = self.activation(inputs[0])
        axes = self.value(inputs[1])
        if not isinstance(axes, np.ndarray) or not _attr(node, "keep_dims", False):
            raise AutotagError(f"TF.js graph: {node['name']}: only Mean over constant axes with keep_dims")
        axes_nchw = sorted(_NHWC_TO_NCHW_AXIS[int(a) % 4] for a in axes.reshape(-1))
        size = (1 if 2 in axes_nchw else h, 1 if 3 in axes_nchw else w)
        return self.emit("ReduceMean", [x], "mean", axes=axes_nchw, keepdims=1), size

    def op_ConcatV2(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        axis = self.value(inputs[-1])
        if not isinstance(axis, np.ndarray):
            raise AutotagError(f"TF.js graph: {node['name']} has a non-constant axis")
        parts = [self.activation(ref) for ref in inputs[:-1]]
        return self.emit("Concat", [p[0] for p in parts], "concat", axis=_NHWC_TO_NCHW_AXIS[int(axis) % 4]), parts[0][1]

    def op_ResizeBilinear(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, (h, w) = self.activation(inputs[0])
        out = self.value(inputs[1])
        if not isinstance(out, np.ndarray):
            raise AutotagError(f"TF.js graph: {node['name']} has a non-constant size")
        out_h, out_w = (int(v) for v in out.reshape(-1))
        # A constant size would pin the input size; the same ratio as scales keeps it free.
        scales = self.const(np.array([1, 1, out_h / h, out_w / w], np.float32), "scales")
        if _attr(node, "align_corners", False):
            mode = "align_corners"
        elif _attr(node, "half_pixel_centers", False):
            mode = "half_pixel"
        else:
            mode = "asymmetric"  # TF's legacy mapping: source = destination * in / out
        resized = self.emit("Resize", [x, "", scales], "resize", mode="linear", coordinate_transformation_mode=mode)
        return resized, (out_h, out_w)

    def op_MaxPool(self, node: dict[str, Any], inputs: list[str]) -> tuple[str, tuple[int, int]]:
        x, (h, w) = self.activation(inputs[0])
        kh, kw = _attr(node, "ksize")[1:3]
        strides = _attr(node, "strides")[1:3]
        if _attr(node, "padding") != "SAME":
            raise AutotagError(f"TF.js graph: {node['name']}: only SAME max-pooling is supported")
        out = self.emit("MaxPool", [x], "maxpool", kernel_shape=[kh, kw], strides=strides, auto_pad="SAME_UPPER")
        return out, (math.ceil(h / strides[0]), math.ceil(w / strides[1]))


# ---------------------------------------------------------------- cheaper ops, same results

# ONNX Runtime runs convolutions in a channel-blocked layout (NCHWc, blocks of 8 channels with AVX2) and
# keeps activations in it only through convolutions, pooling, same-shape Add/Mul, Concat, Relu and
# Sigmoid; any other op costs a reorder out of the layout and back in. MobileNetV3's hard-swish and
# hard-sigmoid (Mul, Add, Clip, Mul by constants) and convolutions with a channel count off the block
# size sat between almost every pair of convolutions: ~25% of the detector's time. Each rewrite below
# is the same arithmetic up to float rounding (a few 1e-7 relative), checked on the real detector by
# bench/check_detector_conversion.py.
_BLOCK = 8


def _simplify(nodes: list[Any], arrays: dict[str, np.ndarray]) -> list[Any]:
    """The converted nodes rewritten into ops ONNX Runtime keeps in its blocked layout (see above)."""
    from onnx import helper

    nodes = list(nodes)
    made = 0

    def scalar(name: str) -> float | None:
        value = arrays.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def users(name: str) -> list[Any]:
        return [n for n in nodes if name in n.input]

    def producer(name: str) -> Any:
        return next((n for n in nodes if name in n.output), None)

    def const(value: np.ndarray, like: str) -> str:
        nonlocal made
        made += 1
        name = f"{like}/simplified__{made}"
        arrays[name] = np.ascontiguousarray(value, np.float32)
        return name

    def group(node: Any) -> int:
        return next((int(a.i) for a in node.attribute if a.name == "group"), 1)

    def swap(old: list[Any], new: list[Any]) -> None:
        """Put `new` where the last of `old` was (their inputs are all computed before that point)."""
        at = max(nodes.index(n) for n in old) - (len(old) - 1)
        for n in old:
            nodes.remove(n)
        nodes[at:at] = new

    def set_params(node: Any, *params: str) -> None:
        del node.input[1:]
        node.input.extend(params)

    def fold_affine(conv: Any, k: float, offset: float = 0.0) -> None:
        """Fold `k * conv(x) + offset` into the convolution's own weights and bias."""
        w = arrays[conv.input[1]]
        b = arrays[conv.input[2]] if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        set_params(conv, const(w * np.float32(k), conv.name), const(b * np.float32(k) + np.float32(offset), conv.name))

    def relu6_of_plus3(clip: Any) -> tuple[Any, str] | None:
        """clip = Clip(Add(x, 3), 0, 6) with the Add used only there -> (the Add, x)."""
        add = producer(clip.input[0])
        if clip.op_type != "Clip" or add is None or add.op_type != "Add" or len(users(add.output[0])) != 1:
            return None
        if scalar(clip.input[1]) != 0.0 or scalar(clip.input[2]) != 6.0:
            return None
        x, three = (add.input[0], add.input[1]) if scalar(add.input[1]) is not None else (add.input[1], add.input[0])
        return (add, x) if scalar(three) == 3.0 and scalar(x) is None else None

    # hard-swish y = (k x) * relu6(x + 3), x from a convolution with C channels
    #   -> y = x * Clip(k x + 3k, 0, 6k), the inner affine map as a 1x1 depthwise convolution
    for clip in [n for n in nodes if n.op_type == "Clip"]:
        found = relu6_of_plus3(clip)
        conv = producer(found[1]) if found else None
        out = users(clip.output[0])
        if not found or conv is None or conv.op_type != "Conv" or len(out) != 1 or out[0].op_type != "Mul":
            continue
        add, x = found
        (final,) = out
        other = producer(next((i for i in final.input if i != clip.output[0]), ""))
        k = None
        if other is not None and other.op_type == "Mul" and x in other.input and len(users(other.output[0])) == 1:
            k = scalar(other.input[0] if other.input[1] == x else other.input[1])
        if k is None or k <= 0:
            continue
        c = arrays[conv.input[1]].shape[0]
        gate = final.output[0] + "/gate"
        swap([other, add, clip, final], [
            helper.make_node("Conv", [x, const(np.full((c, 1, 1, 1), k), gate), const(np.full(c, 3 * k), gate)],
                             [gate + "_affine"], name=gate + "_affine", group=c, kernel_shape=[1, 1]),
            helper.make_node("Clip", [gate + "_affine", const(np.array(0.0), gate), const(np.array(6 * k), gate)],
                             [gate], name=gate),
            helper.make_node("Mul", [x, gate], [final.output[0]], name=final.name),
        ])  # fmt: skip

    # hard-sigmoid after a convolution, k relu6(conv(x) + 3) -> Clip(conv'(x), 0, 6k), conv' = k conv + 3k
    for clip in [n for n in nodes if n.op_type == "Clip"]:
        found = relu6_of_plus3(clip)
        conv = producer(found[1]) if found else None
        out = users(clip.output[0])
        if not found or conv is None or conv.op_type != "Conv" or len(users(conv.output[0])) != 1:
            continue
        if len(out) != 1 or out[0].op_type != "Mul":
            continue
        (scale,) = out
        k = scalar(scale.input[0] if scale.input[1] == clip.output[0] else scale.input[1])
        if k is None or k <= 0:
            continue
        fold_affine(conv, k, 3 * k)
        swap([found[0], clip, scale], [
            helper.make_node("Clip", [conv.output[0], const(np.array(0.0), scale.name),
                                      const(np.array(6 * k), scale.name)], [scale.output[0]], name=scale.name),
        ])  # fmt: skip

    # a spatial mean (squeeze-excite) as the pooling op the blocked layout has
    for i, node in enumerate(nodes):
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if node.op_type == "ReduceMean" and axes == [2, 3]:
            nodes[i] = helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]], name=node.name)

    # a constant factor after a convolution goes into its weights (x16 on the box sizes: exact)
    for scale in [n for n in nodes if n.op_type == "Mul"]:
        k = [scalar(i) for i in scale.input]
        conv = producer(scale.input[0] if k[1] is not None else scale.input[1])
        factor = k[1] if k[1] is not None else k[0]
        if factor is None or conv is None or conv.op_type != "Conv" or len(users(conv.output[0])) != 1:
            continue
        fold_affine(conv, factor)
        conv.output[0] = scale.output[0]
        nodes.remove(scale)

    # a convolution with a channel count off the block size, followed only by per-channel ops up to the
    # next convolution: zero channels up to the block size (the next convolution gives them no weight)
    for conv in [n for n in nodes if n.op_type == "Conv" and group(n) == 1]:
        channels = arrays[conv.input[1]].shape[0]
        if channels % _BLOCK == 0:
            continue
        chain, end = [conv], None
        while end is None:
            out = users(chain[-1].output[0])
            if len(out) != 1:
                break
            (nxt,) = out
            depthwise = nxt.op_type == "Conv" and group(nxt) == channels == arrays[nxt.input[1]].shape[0]
            if nxt.op_type in ("Relu", "Clip") or depthwise:
                chain.append(nxt)
            elif nxt.op_type == "Conv" and group(nxt) == 1 and arrays[nxt.input[1]].shape[1] == channels:
                end = nxt
            else:
                break
        if end is None:
            continue
        extra = -channels % _BLOCK
        for node in chain:
            if node.op_type != "Conv":
                continue
            w = arrays[node.input[1]]
            padded = [const(np.concatenate([w, np.zeros((extra, *w.shape[1:]), np.float32)]), node.name)]
            if len(node.input) > 2:
                padded.append(const(np.concatenate([arrays[node.input[2]], np.zeros(extra, np.float32)]), node.name))
            set_params(node, *padded)
            for a in node.attribute:
                if a.name == "group" and a.i > 1:
                    a.i = channels + extra
        w = arrays[end.input[1]]
        end.input[1] = const(np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), np.float32)], 1), end.name)
    return nodes


def convert_tfjs_graph(
    model_json: Path,
    target: Path,
    outputs: dict[str, str],
    opset: int = 17,
    simplify: bool = True,
    channels_first: bool = False,
) -> None:
    """Write the ONNX model computing `outputs` (TF tensor name -> ONNX output name, NHWC like TF).

    The input is named "image", NHWC float32 with dynamic batch, height and width; NCHW with
    `channels_first` (ONNX Runtime then needs no transpose of the input). `simplify` rewrites the
    converted graph into cheaper ops with the same results (`_simplify`). The file is written
    atomically: a concurrent reader never sees half of it.
    """
    import onnx

    builder = _Builder(read_tfjs_graph(model_json), channels_first)
    builder.convert_upto(list(outputs))
    graph_outputs = []
    for tf_name, onnx_name in outputs.items():
        x, _ = builder.activation(tf_name)
        builder.nodes.append(onnx.helper.make_node("Transpose", [x], [onnx_name], name=onnx_name, perm=[0, 2, 3, 1]))
        graph_outputs.append(
            onnx.helper.make_tensor_value_info(
                onnx_name,
                onnx.TensorProto.FLOAT,
                ["batch", f"{onnx_name}_height", f"{onnx_name}_width", f"{onnx_name}_channels"],
            )
        )
    nodes = _simplify(builder.nodes, builder.arrays) if simplify else builder.nodes
    used = {name for node in nodes for name in node.input}
    initializers = [onnx.numpy_helper.from_array(v, k) for k, v in builder.arrays.items() if k in used]
    graph = onnx.helper.make_graph(nodes, "tfjs_graph", builder.inputs, graph_outputs, initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.producer_name = "autotag.encoders.tfjs_graph"
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model cache is shared like any cache
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
