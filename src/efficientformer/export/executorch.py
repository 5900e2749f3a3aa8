"""ExecuTorch export: the fused model lowered to the XNNPACK backend in a .pte file, and a runner for it.

The graph is that of the fused model (`efficientformer.fuse`), captured by `torch.export` and lowered
with `to_edge_transform_and_lower` and the `XnnpackPartitioner`: every conv, matmul, softmax, GELU
and add runs in XNNPACK delegates; the few ops XNNPACK does not take (the final mean over the grid,
a layout copy) run on ExecuTorch's portable CPU kernels. Before partitioning, the identity `expand`s
that `torch.matmul` leaves in the graph are removed (they are not XNNPACK ops and would split the
graph into ~20 delegates for S0 instead of ~4).

Batch: by default the file takes exactly one image (static batch 1, what a phone app runs).
`dynamic_batch=True` gives a bounded dynamic batch 1..`max_batch`: ExecuTorch plans its memory for
the upper bound, so an unbounded batch does not exist. Image size and class count are fixed.

Talking heads (docs/model.md, Blocks step 6) must not be 1x1 convs in the exported graph: ExecuTorch 1.5's
XNNPACK lowering gives wrong results for a 1x1 conv whose output feeds a softmax over the last axis
(max logit error ~0.1-0.4 on random weights); `layers.TalkingHead` computes them as a matmul over the
head axis, which lowers correctly, and the parity check here catches that class of bug.

executorch is optional (`pip install 'efficientformer[executorch]'`) and imported inside functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnavailableError
from efficientformer.export.common import export_image_size
from efficientformer.export.parity import ParityReport, check_parity, eval_crop_pct, parity_images
from efficientformer.models.fuse import fuse
from efficientformer.utils import atomic_write, require

DEFAULT_ATOL = 1e-4
DEFAULT_MAX_BATCH = 8
BACKEND = "XnnpackBackend"
EXTRA = "executorch"
BATCH_METHOD = "batch_range"  # a constant method of the program: [min_batch, max_batch]


@dataclass(frozen=True)
class ExecutorchExport:
    """What `export_executorch` (or the int8 path) wrote.

    Attributes:
        input_shape: (batch, 3, H, W) with the largest batch the file takes.
        min_batch: 1 for a dynamic batch, else equal to the batch of `input_shape`.
        num_delegates: XNNPACK partitions in the program (fewer = fewer hand-overs to portable kernels).
    """

    path: Path
    backend: str
    executorch_version: str
    input_shape: tuple[int, ...]
    min_batch: int
    num_delegates: int
    int8: bool
    num_bytes: int

    @property
    def dynamic_batch(self) -> bool:
        """True when the file takes batches from `min_batch` to `input_shape[0]`."""
        return self.min_batch != self.input_shape[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "path": str(self.path), "input_shape": list(self.input_shape),
                "dynamic_batch": self.dynamic_batch}


@contextlib.contextmanager
def quiet_executorch() -> Iterator[None]:
    """Silence known noise while exporting: torchao's absent CUDA kernels, torch-internal deprecations."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"read_binary is deprecated", category=DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def executorch_version() -> str:
    """The installed executorch version ("1.5.1")."""
    from importlib.metadata import version

    return version("executorch")


def _drop_identity_expands(graph_module: torch.fx.GraphModule) -> Any:
    """Edge-dialect pass: remove `expand_copy`s that change no size, and turn leading-1 expands into views.

    `torch.matmul` of 3-d/4-d operands decomposes to expand + bmm even when nothing broadcasts; XNNPACK
    has no expand, so each one would end a delegate and start another.
    """
    from executorch.exir.dialects._ops import ops as exir_ops
    from torch.fx.passes.infra.pass_base import PassResult

    expand = exir_ops.edge.aten.expand_copy.default
    changed = False
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not expand:
            continue
        source = node.args[0]
        in_shape, out_shape = tuple(source.meta["val"].shape), tuple(node.meta["val"].shape)
        if not all(isinstance(size, int) for size in (*in_shape, *out_shape)):
            continue  # comparing symbolic sizes would specialise them (a dynamic batch would become fixed)
        extra = len(out_shape) - len(in_shape)
        if in_shape == out_shape:
            node.replace_all_uses_with(source)
        elif extra > 0 and out_shape[extra:] == in_shape and all(size == 1 for size in out_shape[:extra]):
            with graph_module.graph.inserting_before(node):
                view = graph_module.graph.call_function(exir_ops.edge.aten.view_copy.default, (source, list(out_shape)))
            view.meta = dict(node.meta)
            node.replace_all_uses_with(view)
        else:
            continue  # a real broadcast (a dynamic batch): keep it
        graph_module.graph.erase_node(node)
        changed = True
    if changed:
        graph_module.graph.lint()
        graph_module.recompile()
    return PassResult(graph_module, changed)


def capture(module: nn.Module, img_size: tuple[int, int], dynamic_batch: bool = False,
            max_batch: int = DEFAULT_MAX_BATCH) -> torch.export.ExportedProgram:
    """`torch.export` of an inference module at (B, 3, H, W), B = 1 or a bounded dynamic batch."""
    height, width = img_size
    if dynamic_batch:
        if max_batch < 2:
            raise ConfigError(f"max_batch must be >= 2 for a dynamic batch, got {max_batch}")
        example = torch.zeros(2, 3, height, width)  # (B, 3, H, W): torch.export specialises a size-1 dim
        return capture_example(module, example, ({0: torch.export.Dim("batch", min=1, max=max_batch)},))
    return capture_example(module, torch.zeros(1, 3, height, width))


def capture_example(module: nn.Module, example: torch.Tensor, dynamic_shapes: Any = None
                    ) -> torch.export.ExportedProgram:
    """`torch.export` of an inference module at `example`'s shape (any input: images or feature maps)."""
    with quiet_executorch():
        return torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)


def partition(program: torch.export.ExportedProgram, batch_range: tuple[int, int] = (1, 1)) -> Any:
    """The edge program with every op XNNPACK takes in XNNPACK delegates (an `EdgeProgramManager`)."""
    with quiet_executorch():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        return to_edge_transform_and_lower(program, transform_passes=[_drop_identity_expands],
                                           partitioner=[XnnpackPartitioner()],
                                           constant_methods={BATCH_METHOD: list(batch_range)})


def lower_to_xnnpack(program: torch.export.ExportedProgram, batch_range: tuple[int, int]) -> tuple[bytes, int]:
    """Lower an exported program to XNNPACK; returns (.pte bytes, number of XNNPACK delegates)."""
    edge = partition(program, batch_range)
    delegates = sum(node.op == "call_function" and str(node.target) == "executorch_call_delegate"
                    for node in edge.exported_program().graph.nodes)
    with quiet_executorch():
        return edge.to_executorch().buffer, delegates


def write_program(path: Path, data: bytes, img_size: tuple[int, int], batch_range: tuple[int, int], delegates: int,
                  int8: bool) -> ExecutorchExport:
    """Write .pte bytes atomically (a reader never sees a partial file) and describe them."""
    with atomic_write(path) as handle:
        handle.write(data)
    return ExecutorchExport(path=path, backend=BACKEND, executorch_version=executorch_version(),
                            input_shape=(batch_range[1], 3, *img_size), min_batch=batch_range[0],
                            num_delegates=delegates, int8=int8, num_bytes=len(data))


def inference_module(model: nn.Module) -> nn.Module:
    """The fused float32 CPU copy of `model` that every ExecuTorch export starts from."""
    if getattr(model, "features_only", False):
        raise ConfigError("ExecuTorch export of a features_only model is not supported; export the classifier model")
    return fuse(model).to(device="cpu", dtype=torch.float32)


def batch_range_of(dynamic_batch: bool, max_batch: int) -> tuple[int, int]:
    """(min, max) batch of a file: (1, 1) static, (1, max_batch) dynamic."""
    return (1, max_batch) if dynamic_batch else (1, 1)


def export_executorch(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                      dynamic_batch: bool = False, max_batch: int = DEFAULT_MAX_BATCH) -> ExecutorchExport:
    """Write the fused, eval-mode `model` as an ExecuTorch program for the XNNPACK backend (float32).

    Args:
        model: an EfficientFormerV2, or any module whose parts expose `.fuse()`; it is not modified.
        img_size: input (height, width) or an int; default the model's `config.img_size`.
        dynamic_batch: batches 1..`max_batch`; default a static batch of 1.
        max_batch: the largest batch of a dynamic-batch file (memory is planned for it).
    """
    require("executorch", EXTRA)
    size = export_image_size(model, img_size)
    batch_range = batch_range_of(dynamic_batch, max_batch)
    program = capture(inference_module(model), size, dynamic_batch, max_batch)
    data, delegates = lower_to_xnnpack(program, batch_range)
    return write_program(Path(path), data, size, batch_range, delegates, int8=False)


class ExecutorchRunner:
    """A loaded .pte `forward`: call it with a float32 (B, 3, H, W) array, get the output array.

    Attributes:
        input_shape: (largest batch, 3, H, W) from the program's metadata.
        batch_range: (min, max) batch the program takes.
    """

    def __init__(self, path: Path, program: Any) -> None:
        self.path = path
        self._program = program  # keeps the loaded data alive
        self._method = program.load_method("forward")
        self.input_shape = tuple(program.metadata("forward").input_tensor_meta(0).sizes())
        if BATCH_METHOD in program.method_names:
            low, high = program.load_method(BATCH_METHOD).execute([])
            self.batch_range = (int(low), int(high))
        else:  # a .pte from elsewhere: assume the static batch of its metadata
            self.batch_range = (self.input_shape[0], self.input_shape[0])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        try:
            (output,) = self._method.execute([inputs])
        except RuntimeError as error:
            low, high = self.batch_range
            raise BadFileError(f"ExecuTorch could not run {self.path} on a batch of shape {tuple(inputs.shape)} "
                               f"(it takes {self.input_shape} with batch {low}..{high}): {error}") from None
        return output.numpy()


def load_runner(path: str | os.PathLike, num_threads: int | None = None) -> ExecutorchRunner:
    """Load a .pte file on the ExecuTorch runtime; the result maps a float32 (B, 3, H, W) array to outputs.

    Args:
        num_threads: size of ExecuTorch's (process-wide) CPU thread pool used by XNNPACK; default
            leaves it as it is (one thread per core at start-up).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the runtime cannot load the file (the message names it).
    """
    require("executorch", EXTRA)
    with quiet_executorch():
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ExecuTorch file {path} does not exist")
    if num_threads is not None:
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        portable_lib._unsafe_reset_threadpool(num_threads)
    runtime = Runtime.get()
    if not runtime.backend_registry.is_available(BACKEND):
        raise UnavailableError(f"this ExecuTorch build has no {BACKEND}; it has "
                               f"{', '.join(runtime.backend_registry.registered_backend_names)}")
    try:
        return ExecutorchRunner(path, runtime.load_program(path))
    except Exception as error:  # the runtime raises RuntimeError or its own types for a bad program
        raise BadFileError(f"ExecuTorch cannot load {path}: {error}") from None


def check_executorch_parity(model: nn.Module, path: str | os.PathLike, *, atol: float = DEFAULT_ATOL,
                            images: torch.Tensor | None = None) -> ParityReport:
    """Run a .pte file on the ExecuTorch runtime and compare it with eager `model` on the parity images.

    Args:
        model: the eager model the file was exported from (compared unfused, in eval mode).
        atol: tolerance on the largest absolute output difference (1e-4 for fp32).
        images: (N, 3, H, W) preprocessed inputs; default `parity_images` at the file's input size.

    Raises:
        ParityError: the outputs differ by more than `atol`; `.report` holds the numbers.
    """
    runner = load_runner(path)
    if images is None:
        images = parity_images(runner.input_shape[2:], crop_pct=eval_crop_pct(model))
    low, high = runner.batch_range
    sizes = [size for size in range(min(high, len(images)), low - 1, -1) if len(images) % size == 0]
    if not sizes:
        raise ConfigError(f"{len(images)} parity images do not split into batches of {low}..{high} images, "
                          f"which {path} takes")
    batch_size = sizes[0]  # the largest batch the file takes that splits the images evenly
    return check_parity(model, runner, images, atol=atol, format="executorch",
                        runtime=f"executorch {executorch_version()} ({BACKEND})", batch_size=batch_size, path=str(path))


__all__ = ["DEFAULT_ATOL", "DEFAULT_MAX_BATCH", "ExecutorchExport", "ExecutorchRunner", "capture", "capture_example",
           "check_executorch_parity", "export_executorch", "load_runner", "lower_to_xnnpack", "partition"]
