"""Exact post-export rewrites of an ONNX graph for onnxruntime's CPU kernels.

Each rewrite replaces a node by others computing the same numbers (to float rounding) faster on
onnxruntime, and is applied by `export_onnx` unless `rewrite=False`. What each one buys is measured
by `benchmarks/deploy_ablation.py` (README, "Deployment speed").

- `resize_as_matmul`: the x2 bilinear upsample of stride attention (align_corners=False, i.e.
  half-pixel coordinates with the edge clamped). onnxruntime runs a `Resize` whose input is not in
  its blocked NCHWc layout with a generic kernel; here the input of the upsample is the sum of an
  attention matmul and a conv, so it never is. Bilinear resampling is linear in the input, so on a
  static h x w grid it is a constant matrix: out = x.reshape(B, C, h*w) @ U, U of shape
  (h*w, 4*h*w) with at most four non-zeros per column, which MLAS' GEMM runs faster than the
  Resize kernel for the small grids of stride attention (7x7 at 224 px). On larger grids the dense
  U grows as (h*w)^2, so from `DENSE_MAX_TOKENS` up the separable form is used: x @ Aw^T, then
  Ah @ (.), with Ah (2h, h) and Aw (2w, w) the 1-d interpolation matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from efficientformer.errors import UnknownNameError

DENSE_MAX_TOKENS = 64  # grids up to 8x8 (256 px inputs) use the dense matrix
# Equal for an output size > 1, which a x2 upsample always has.
HALF_PIXEL_MODES = ("half_pixel", "pytorch_half_pixel")


def bilinear_matrix(size: int, scale: int = 2) -> np.ndarray:
    """(scale*size, size) matrix of 1-d linear interpolation with half-pixel centres and clamped edges.

    Row o holds the weights of output o: source coordinate s = (o + 0.5) / scale - 0.5, clamped at 0,
    between inputs floor(s) and floor(s) + 1 (clamped at size - 1). This is torch's
    `interpolate(mode="bilinear", align_corners=False)` along one axis.
    """
    matrix = np.zeros((scale * size, size), dtype=np.float64)
    for out in range(scale * size):
        source = max((out + 0.5) / scale - 0.5, 0.0)
        low = int(np.floor(source))
        frac = source - low
        matrix[out, min(low, size - 1)] += 1.0 - frac
        matrix[out, min(low + 1, size - 1)] += frac
    return matrix


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant(graph: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    if not name:
        return None
    for initializer in graph.initializer:
        if initializer.name == name:
            return numpy_helper.to_array(initializer)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _static_shape(shapes: dict[str, Any], name: str) -> list[int | None] | None:
    value = shapes.get(name)
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]


def resize_as_matmul(model: Any) -> int:
    """In place: replace every x2 bilinear half-pixel `Resize` of a static C x h x w input by MatMuls.

    Returns the number of nodes rewritten. Other Resizes (other modes, scales, sizes given as a
    tensor computed at run time, unknown shapes) are left as they are.
    """
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    graph = model.graph
    rewritten = 0
    new_nodes = []
    replaced_inputs: set[str] = set()
    for node in graph.node:
        replacement = None
        if (node.op_type == "Resize" and node.domain in ("", "ai.onnx")
                and _attribute(node, "mode", "nearest") == "linear"
                and _attribute(node, "coordinate_transformation_mode", "half_pixel") in HALF_PIXEL_MODES
                and not _attribute(node, "antialias", 0)):
            shape = _static_shape(shapes, node.input[0])
            scales = _constant(graph, node.input[2]) if len(node.input) > 2 else None
            sizes = _constant(graph, node.input[3]) if len(node.input) > 3 else None
            if shape is not None and len(shape) == 4 and all(d is not None for d in shape[1:]):
                channels, height, width = shape[1:]
                wanted = [1.0, 1.0, 2.0, 2.0]
                doubled = (scales is not None and scales.size == 4 and np.allclose(scales, wanted)) or (
                    sizes is not None and sizes.size == 4 and list(sizes[1:]) == [channels, 2 * height, 2 * width])
                if doubled:
                    replacement = _matmul_upsample(node, channels, height, width, graph, rewritten, helper,
                                                   numpy_helper)
        if replacement is None:
            new_nodes.append(node)
        else:
            new_nodes.extend(replacement)
            replaced_inputs.update(node.input[1:])
            rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        # The scales of the replaced Resizes are now unused (onnxruntime would warn about each).
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        unused = [init for init in graph.initializer if init.name not in used and init.name in replaced_inputs]
        for init in unused:
            graph.initializer.remove(init)
    return rewritten


def _matmul_upsample(node: Any, channels: int, height: int, width: int, graph: Any, index: int, helper: Any,
                     numpy_helper: Any) -> list[Any]:
    prefix = f"{node.name or 'resize'}_as_matmul{index}"
    x, y = node.input[0], node.output[0]

    def constant(suffix: str, value: np.ndarray) -> str:
        name = f"{prefix}_{suffix}"
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    rows, cols = bilinear_matrix(height), bilinear_matrix(width)  # (2h, h), (2w, w)
    if height * width <= DENSE_MAX_TOKENS:
        # out[c, (i, j)] = sum_{(p, q)} x[c, (p, q)] * rows[i, p] * cols[j, q]
        dense = np.kron(rows, cols).T.astype(np.float32)  # (h*w, 4*h*w)
        flat = constant("flat", np.array([-1, channels, height * width], dtype=np.int64))
        matrix = constant("matrix", dense)
        out_shape = constant("shape", np.array([-1, channels, 2 * height, 2 * width], dtype=np.int64))
        return [helper.make_node("Reshape", [x, flat], [f"{prefix}_flat_out"], name=f"{prefix}_flatten"),
                helper.make_node("MatMul", [f"{prefix}_flat_out", matrix], [f"{prefix}_mm_out"], name=f"{prefix}_mm"),
                helper.make_node("Reshape", [f"{prefix}_mm_out", out_shape], [y], name=f"{prefix}_unflatten")]
    cols_t = constant("cols_t", cols.T.astype(np.float32))  # (w, 2w)
    rows_m = constant("rows", rows.astype(np.float32))  # (2h, h)
    return [helper.make_node("MatMul", [x, cols_t], [f"{prefix}_w_out"], name=f"{prefix}_w"),
            helper.make_node("MatMul", [rows_m, f"{prefix}_w_out"], [y], name=f"{prefix}_h")]


REWRITES = {"resize_as_matmul": resize_as_matmul}


def rewrite_for_onnxruntime(model: Any, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Apply the named rewrites (default: all of REWRITES) in place; returns nodes rewritten per rewrite."""
    chosen = tuple(REWRITES) if names is None else names
    unknown = [name for name in chosen if name not in REWRITES]
    if unknown:
        raise UnknownNameError(f"unknown ONNX rewrite(s) {', '.join(unknown)}; known: {', '.join(REWRITES)}")
    return {name: REWRITES[name](model) for name in chosen}


__all__ = ["REWRITES", "resize_as_matmul", "rewrite_for_onnxruntime"]
