"""`efficientformer predict [IMAGES...]`: top-k classes of image files."""

from __future__ import annotations

import argparse

from rich.table import Table

from efficientformer.cli import console, print_json, warn
from efficientformer.data.preprocess import sample_image_path
from efficientformer.predict import predict, prepare_model
from efficientformer.train.evaluate import run_metadata

HELP = "Classify images (default: the bundled cat photo) and print the top-k classes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: the bundled sample photo)")
    parser.add_argument("--model", default=None, help="registry name, alias (s0) or config JSON; optional with a "
                                                      "checkpoint file that says which model it is")
    parser.add_argument("--weights", default=None, help="checkpoint file (any layout) or weight tag from "
                                                        "`efficientformer list`; without it the weights are random")
    parser.add_argument("--topk", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="eval centre-crop fraction (default: the training run's, else the weight tag's, "
                             "e.g. 0.95 for the zoo weights, else 0.875)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    model, pretrained = prepare_model(args.model, args.weights, device=args.device)
    if not pretrained:
        warn(f"no --weights given: {model.config.name} has random weights, so these predictions are meaningless")
    images = args.images or [str(sample_image_path())]
    # A checkpoint of our training runs names its classes and eval crop (ImageNet names otherwise).
    stored = run_metadata(args.weights) if args.weights is not None else {}
    names = stored.get("classes")
    if names is not None and len(names) != model.num_classes:
        names = None
    crop_pct = args.crop_pct if args.crop_pct is not None else stored.get("eval_crop_pct")  # None: data_config
    results = predict(model, images, topk=args.topk, crop_pct=crop_pct, names=names)
    if args.json:
        print_json([{"image": image, "model": model.config.name, "pretrained": pretrained,
                     "predictions": [p._asdict() for p in predictions]}
                    for image, predictions in zip(images, results)])
        return 0
    for image, predictions in zip(images, results):
        console.print(f"[bold]{image}[/] ({model.config.name})", highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("rank", justify="right")
        table.add_column("class", justify="right")
        table.add_column("name")
        table.add_column("prob", justify="right")
        for rank, prediction in enumerate(predictions, 1):
            table.add_row(str(rank), str(prediction.index), prediction.name, f"{100 * prediction.prob:.2f}%")
        console.print(table)
    return 0
