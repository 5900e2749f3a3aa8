"""`efficientformer export`: write a deployable file of a model and check it against eager PyTorch."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from rich.table import Table

from efficientformer.cli import console, err_console, print_json, warn
from efficientformer.cli.info import image_size
from efficientformer.errors import ConfigError
from efficientformer.export import (
    DEFAULT_CALIB_COUNT,
    FORMATS,
    CalibrationWarning,
    ExportResult,
    Int8Export,
    Int8Report,
    ParityError,
    ParityReport,
    export_model,
)
from efficientformer.models.fuse import APPROXIMATIONS
from efficientformer.predict import prepare_model

PRECISIONS = ("f32", "bf16", "fp16")
PRECISION_FORMATS = ("openvino", "coreml")
HELP = "Export a model (fused, for inference) to a deployment format and check its logits against PyTorch."
APPROXIMATE_FORMATS = ("onnx", "openvino")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="registry name, alias (s0) or config JSON; optional with a "
                                                      "checkpoint file that says which model it is")
    parser.add_argument("--weights", default=None, help="checkpoint file (any layout) or weight tag from "
                                                        "`efficientformer list`; without it the weights are random")
    parser.add_argument("--format", default="onnx", choices=sorted(FORMATS), help="output format (default onnx)")
    parser.add_argument("--img-size", type=image_size, default=None, help="input size N or HxW (default: the config's)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the config's or "
                                                                      "the checkpoint's)")
    parser.add_argument("--output", type=Path, default=None, help="output file (default: <model name><suffix> here)")
    parser.add_argument("--dynamic-batch", dest="dynamic_batch", action="store_true", default=None,
                        help="a dynamic batch dimension (the ONNX default; ExecuTorch: batches 1..8)")
    parser.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                        help="fix the batch size to 1 (the ExecuTorch default)")
    parser.add_argument("--int8", action="store_true", help="post-training int8 quantization (onnx, executorch), "
                                                            "checked against fp32 with the int8 tolerance")
    parser.add_argument("--calib", default=None, help="int8 calibration images: a folder of class folders or of "
                                                      "images, or a path,label list file (default: the 4 parity "
                                                      "images, with a warning)")
    parser.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT,
                        help=f"use at most N calibration images, spread over the files (default {DEFAULT_CALIB_COUNT})")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's, 20)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="openvino: f32 (default, exact), bf16 or fp16 (IR weights in fp16) inference precision; "
                             "coreml: f32 (default) or fp16")
    parser.add_argument("--atol", type=float, default=None, help="parity tolerance on the largest absolute logit "
                                                                 "difference (default 1e-4 for fp32, 0.25 for "
                                                                 "bf16/fp16)")
    parser.add_argument("--approximate", default=None, choices=sorted(APPROXIMATIONS),
                        help="opt-in approximation for speed (onnx, openvino; off by default: the export is exact); "
                             "its logit error and top-1 agreement against exact eager are printed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _int8_table(report: Int8Report) -> Table:
    table = Table(title=f"int8 check: {report.runtime} vs fp32 eager PyTorch", title_justify="left")
    for column in ("images", "top-1 agreement", "relative error", "cosine", "max abs diff", "mean abs diff"):
        table.add_column(column, justify="right")
    table.add_column("result")
    table.add_row(str(report.num_images), f"{report.top1_agreement:.0%} (min {report.min_top1:.0%})",
                  f"{report.relative_error:.3g} (max {report.max_relative_error:g})", f"{report.cosine_similarity:.4f}",
                  f"{report.max_abs_diff:.3g}", f"{report.mean_abs_diff:.3g}",
                  "[green]ok[/]" if report.passed else "[red]FAIL[/]")
    return table


def _size_latency_table(file: Int8Export) -> Table:
    table = Table(title=f"fp32 -> int8 on the same runtime (median batch-1 latency, interleaved; calibrated on "
                        f"{file.num_calib_images} images from {file.calib_source})", title_justify="left")
    for column in ("", "fp32", "int8", "change"):
        table.add_column(column, justify="right")
    table.add_row("size (MB)", f"{file.fp32_num_bytes / 1e6:.2f}", f"{file.num_bytes / 1e6:.2f}",
                  f"{file.num_bytes / file.fp32_num_bytes:.2f}x")
    fp32_ms, int8_ms = file.latency_ms["fp32"], file.latency_ms["int8"]
    table.add_row("latency (ms)", f"{fp32_ms:.2f}", f"{int8_ms:.2f}", f"{fp32_ms / int8_ms:.2f}x speed-up")
    return table


def _parity_table(report: ParityReport) -> Table:
    if isinstance(report, Int8Report):
        return _int8_table(report)
    table = Table(title=f"parity: {report.runtime} vs eager PyTorch", title_justify="left")
    table.add_column("images", justify="right")
    table.add_column("max abs diff", justify="right")
    table.add_column("mean abs diff", justify="right")
    table.add_column("relative error", justify="right")
    table.add_column("top-1 agreement", justify="right")
    table.add_column("atol", justify="right")
    table.add_column("result")
    table.add_row(str(report.num_images), f"{report.max_abs_diff:.3g}", f"{report.mean_abs_diff:.3g}",
                  f"{report.relative_error:.3g}", f"{report.top1_agreement:.0%}", f"{report.atol:g}",
                  "[green]ok[/]" if report.passed else "[red]FAIL[/]")
    return table


def _print(result: ExportResult | None, report: ParityReport | None, output: Path, as_json: bool) -> None:
    if as_json:
        print_json({"format": result.format if result is not None else report.format, "output": str(output),
                    "file": result.artifact.to_dict() if result is not None else None,
                    "parity": report.to_dict() if report is not None else None,
                    "parity_unavailable": result.parity_unavailable if result is not None else None})
        return
    if result is not None:
        details = result.artifact.to_dict()
        shape = "x".join(map(str, details.get("input_shape", ())))
        opset = f", opset {details['opset']}" if "opset" in details else ""
        opset += f", {details['backend']}" if "backend" in details else ""
        opset += ", int8" if details.get("int8") else ""
        opset += f", {details['precision']}" if "precision" in details else ""
        console.print(f"wrote [bold]{output}[/] ({details.get('num_bytes', 0) / 1e6:.1f} MB{opset}, input {shape})",
                      highlight=False, soft_wrap=True)
    if result is not None and isinstance(result.artifact, Int8Export):
        console.print(_size_latency_table(result.artifact))
    if report is not None:
        console.print(_parity_table(report))


def run(args: argparse.Namespace) -> int:
    model, pretrained = prepare_model(args.model, args.weights, device="cpu", num_classes=args.num_classes,
                                      img_size=args.img_size)
    if not pretrained:
        warn(f"no --weights given: exporting {model.config.name} with random weights")
    spec = FORMATS[args.format]
    output = args.output or Path(f"{model.config.name}{spec.suffix}")
    options = {"opset": args.opset} if args.opset is not None else {}
    if args.precision is not None:
        if args.format not in PRECISION_FORMATS:
            raise ConfigError(f"--precision applies to --format {' and '.join(PRECISION_FORMATS)}, not {args.format}")
        options["precision"] = args.precision
    if args.approximate is not None:
        if args.format not in APPROXIMATE_FORMATS or args.int8:
            raise ConfigError(f"--approximate applies to fp32 --format {' and '.join(APPROXIMATE_FORMATS)}, "
                              f"not {args.format}{' --int8' if args.int8 else ''}")
        options["approximate"] = (args.approximate,)
    if args.int8 and args.calib is None:
        warn("no --calib given: calibrating int8 on the 4 built-in parity images; pass a folder of real images")
    if args.calib is not None and not args.int8:
        warn("--calib is used only with --int8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)  # said above, in the CLI's words
            result = export_model(model, output, args.format, dynamic_batch=args.dynamic_batch, atol=args.atol,
                                  int8=args.int8, calib=args.calib, calib_count=args.calib_count, **options)
    except ParityError as error:
        _print(None, error.report, output, args.json)
        err_console.print(f"[bold red]parity failed:[/] {output} was written but its outputs differ from PyTorch: "
                          f"{error.report.summary()}", highlight=False, soft_wrap=True)
        return 1
    _print(result, result.parity, output, args.json)
    if result.parity_unavailable:
        warn(f"parity could not run on this machine, only a structural check did: {result.parity_unavailable}")
    return 0
