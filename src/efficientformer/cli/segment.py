"""`efficientformer segment train|eval|predict`: Semantic FPN segmentation on folders of images with PNG masks."""

from __future__ import annotations

import argparse

from rich.markup import escape

from efficientformer.cli import console, print_json
from efficientformer.data.folder import BAD_IMAGE_POLICIES
from efficientformer.train.segment_job import SegmentJob, run_segment_eval, run_segment_predict, run_segment_training

HELP = "Semantic segmentation (Semantic FPN on the backbone): train, evaluate (mIoU) or predict colour overlays."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    defaults = SegmentJob(data="")
    train = actions.add_parser("train", help="train a segmenter on a mask folder",
                               description="Train a Semantic FPN segmenter. Data: images/ + annotations/ (or masks/) "
                                           "with classes.txt, ADE20K or VOC layout.")
    train.add_argument("--data", required=True, help="training folder")
    train.add_argument("--train-split", default=None, help="sub-split of --data (e.g. training)")
    train.add_argument("--val-data", default=None, help="evaluation folder (default: --data)")
    train.add_argument("--val-split", default=None, help="sub-split to evaluate on (e.g. validation); without it "
                                                         "and --val-data the training pairs are evaluated")
    train.add_argument("--classes", default=None, help="class-name file (default DATA/classes.txt)")
    train.add_argument("--model", default=defaults.model, help="backbone: registry name, alias or config JSON")
    train.add_argument("--pretrained", default=None, help="backbone weights: a tag, 'default' or a checkpoint file")
    train.add_argument("--output", default=defaults.output, help="run directory (default %(default)s)")
    for name in ("img_size", "epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup_epochs",
                 "fpn_channels", "head_channels", "ignore_index", "frozen_stages", "seed"):
        value = getattr(defaults, name)
        kind = float if isinstance(value, float) else int
        train.add_argument("--" + name.replace("_", "-"), type=kind, default=value, help=f"default {value}")
    train.add_argument("--reduce-zero-label", action="store_true", help="masks use 0 for 'other' (ADE20K raw)")
    train.add_argument("--norm-eval", action="store_true", help="keep every BatchNorm in eval mode")
    train.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error",
                       help="stop at a bad image or mask (error) or leave it out and list it (skip)")
    train.add_argument("--resume", default=None, help="'auto' (latest state in --output) or a state file")
    train.add_argument("--device", default="auto")
    train.add_argument("--workers", type=int, default=0)
    train.set_defaults(run_action=_train)

    evaluate = actions.add_parser("eval", help="mIoU and per-class IoU of a segmenter checkpoint")
    evaluate.add_argument("--weights", required=True, help="a segmenter checkpoint (best.safetensors of a run)")
    evaluate.add_argument("--data", required=True, help="mask folder")
    evaluate.add_argument("--split", default=None, help="its sub-split")
    evaluate.add_argument("--output", default="seg_eval", help="folder for summary.json and per_class.csv")
    evaluate.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.set_defaults(run_action=_eval)

    predict = actions.add_parser("predict", help="colour-overlay and label PNGs for images")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--weights", required=True, help="a segmenter checkpoint")
    predict.add_argument("--output", default="seg_predict", help="folder for <name>_overlay.png and <name>_mask.png")
    predict.add_argument("--alpha", type=float, default=0.5, help="class-colour opacity (default 0.5)")
    predict.add_argument("--device", default="auto")
    predict.set_defaults(run_action=_predict)


def run(args: argparse.Namespace) -> int:
    return args.run_action(args)


def _train(args: argparse.Namespace) -> int:
    fields = {f: getattr(args, f) for f in ("data", "train_split", "val_data", "val_split", "classes", "model",
                                            "pretrained", "output", "img_size", "epochs", "max_steps", "batch_size",
                                            "lr", "weight_decay", "warmup_epochs", "fpn_channels", "head_channels",
                                            "ignore_index", "frozen_stages", "seed", "reduce_zero_label",
                                            "norm_eval", "on_bad_image", "resume", "device")}
    summary = run_segment_training(SegmentJob(**fields, num_workers=args.workers))
    console.print(f"best mIoU {summary['best_miou']:.2f}% after {summary['steps']} steps; weights in "
                  f"{escape(summary['best'])}", highlight=False, soft_wrap=True)
    return 0


def _eval(args: argparse.Namespace) -> int:
    summary = run_segment_eval(args.weights, args.data, args.split, args.output, args.device, args.on_bad_image)
    if args.json:
        print_json(summary)
        return 0
    console.print(f"mIoU {summary['miou']:.2f}%  pixel accuracy {summary['pixel_accuracy']:.2f}%  on "
                  f"{summary['images']} images; per-class IoU in {escape(summary['output'])}/per_class.csv",
                  highlight=False, soft_wrap=True)
    for row in summary["per_class"]:
        console.print(f"  {escape(row['class'])}: {row['iou']:.2f}%", highlight=False)
    if summary["skipped"]:
        console.print(f"[yellow]left out {len(summary['skipped'])} bad image(s)/mask(s)[/]: "
                      + escape(", ".join(summary["skipped"][:10])), highlight=False, soft_wrap=True)
    return 0


def _predict(args: argparse.Namespace) -> int:
    for item in run_segment_predict(args.weights, args.images, args.output, args.device, args.alpha):
        console.print(f"{escape(item['image'])} -> {escape(item['overlay'])}", highlight=False, soft_wrap=True)
    return 0
