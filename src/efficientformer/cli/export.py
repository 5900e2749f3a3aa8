"""`efficientformer export`: write a deployable file of a model and check it against eager PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from efficientformer.cli import console, err_console, print_json, warn
from efficientformer.cli.info import image_size
from efficientformer.export import FORMATS, ExportResult, ParityError, ParityReport, export_model
from efficientformer.predict import prepare_model

HELP = "Export a model (fused, for inference) to a deployment format and check its logits against PyTorch."


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
    parser.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                        help="fix the batch size to 1 (default: a dynamic batch dimension)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's, 20)")
    parser.add_argument("--atol", type=float, default=None, help="parity tolerance on the largest absolute logit "
                                                                 "difference (default 1e-4 for fp32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _parity_table(report: ParityReport) -> Table:
    table = Table(title=f"parity: {report.runtime} vs eager PyTorch", title_justify="left")
    table.add_column("images", justify="right")
    table.add_column("max abs diff", justify="right")
    table.add_column("mean abs diff", justify="right")
    table.add_column("top-1 agreement", justify="right")
    table.add_column("atol", justify="right")
    table.add_column("result")
    table.add_row(str(report.num_images), f"{report.max_abs_diff:.3g}", f"{report.mean_abs_diff:.3g}",
                  f"{report.top1_agreement:.0%}", f"{report.atol:g}", "[green]ok[/]" if report.passed else "[red]FAIL[/]")
    return table


def _print(result: ExportResult | None, report: ParityReport, output: Path, as_json: bool) -> None:
    if as_json:
        print_json({"format": report.format, "output": str(output),
                    "file": result.artifact.to_dict() if result is not None else None, "parity": report.to_dict()})
        return
    if result is not None:
        details = result.artifact.to_dict()
        shape = "x".join(map(str, details.get("input_shape", ())))
        opset = f", opset {details['opset']}" if "opset" in details else ""
        console.print(f"wrote [bold]{output}[/] ({details.get('num_bytes', 0) / 1e6:.1f} MB{opset}, input {shape})",
                      highlight=False, soft_wrap=True)
    console.print(_parity_table(report))


def run(args: argparse.Namespace) -> int:
    model, pretrained = prepare_model(args.model, args.weights, device="cpu", num_classes=args.num_classes,
                                      img_size=args.img_size)
    if not pretrained:
        warn(f"no --weights given: exporting {model.config.name} with random weights")
    spec = FORMATS[args.format]
    output = args.output or Path(f"{model.config.name}{spec.suffix}")
    options = {"opset": args.opset} if args.opset is not None else {}
    try:
        result = export_model(model, output, args.format, dynamic_batch=args.dynamic_batch, atol=args.atol, **options)
    except ParityError as error:
        _print(None, error.report, output, args.json)
        err_console.print(f"[bold red]parity failed:[/] {output} was written but its outputs differ from PyTorch: "
                          f"{error.report.summary()}", highlight=False, soft_wrap=True)
        return 1
    _print(result, result.parity, output, args.json)
    return 0
