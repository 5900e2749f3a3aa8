"""The search end to end: supernet (trained or loaded) + latency table (built or loaded) + slimming.

    summary = run_search(SearchJob())                      # the embedded default: digits, tiny space, 64 px
    summary = run_search(SearchJob(supernet="sn.safetensors", lut="lut.json", data="train/",
                                   target_latency_ms=3.0, target_params=3.5e6))

Everything goes under `SearchJob.output` and every stage resumes: the supernet run
(`supernet/`, the training job's exact resume), the table (`lut.json`, entry by entry) and the
search (`search_state.json`, step by step). Outputs: `trajectory.csv`, `pareto.png`,
`<space>_<architecture>@<ms>ms_mes@<MES>.json` (a ModelConfig: `efficientformer train --model` takes
it) and `summary.json`.

Accuracy of a subnet (`SupernetAccuracy`): extract it from the supernet (a plain model with the
shared weights), recalibrate its BN statistics on `calib_images` training images (resized, not
augmented), and take its top-1 on `eval_images` held-out images (the run's validation split, the
same split the supernet training held out). Cached by signature, and stored in the search state.

Reference: the space's counterpart of S0, scored with the same supernet, table and harness. For
the paper space that is S0 itself; the tiny space has no S0, so it is `efficientformerv2_test`,
the project's tiny variant, which is a point of the tiny space; otherwise the space's smallest
subnet. Without explicit targets, the targets are `relative_latency` of the largest subnet's
predicted latency and `relative_params` of its parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score
from efficientformer.data.datasets import run_datasets
from efficientformer.data.transforms import AugmentedDataset, EvalTransform
from efficientformer.errors import ConfigError
from efficientformer.factory import build_model, resolve_spec
from efficientformer.models.config import ModelConfig
from efficientformer.models.registry import get as get_config
from efficientformer.models.spec import ModelSpec
from efficientformer.models.summary import param_count
from efficientformer.search.lut import LatencyTable, ParamCounter, build_lut
from efficientformer.search.lut_validate import calibrate, calibration_configs, measure_modules
from efficientformer.search.outputs import write_found, write_trajectory_csv
from efficientformer.search.pareto import Reference, plot_pareto
from efficientformer.search.sandwich import SUPERNET_FILE, train_supernet
from efficientformer.search.slimming import SlimResult, Step, slim
from efficientformer.search.space import SearchSpace, get_space, signature
from efficientformer.search.supernet import Supernet, load_supernet, recalibrate_bn
from efficientformer.train.distributed import resolve_device
from efficientformer.train.job import TrainJob
from efficientformer.train.recipes import DEFAULT
from efficientformer.utils.io import write_json
from efficientformer.utils.threads import threads

REFERENCE_NAMES = ("efficientformerv2_s0", "efficientformerv2_test")
PUBLISHED = ("efficientformerv2_s0", "efficientformerv2_s1", "efficientformerv2_s2", "efficientformerv2_l")


@dataclass(frozen=True)
class SearchJob:
    """What `run_search` does (None = build it / choose the default).

    Args:
        output: run directory.
        supernet: a `save_supernet` file; None trains one on `data` (`space`, `supernet_epochs`, `train_img_size`).
        supernet_epochs: None = 6, except for a space other than the tiny one on the embedded digits: 3, so
            that the default paper-space command (latency at 224) stays within 30 minutes on 2 cores (README).
        img_size: the resolution the network is deployed at: the latency table, the parameters (attention
            biases grow with it), the target and the end-to-end measurements; None = the supernet's.
        train_img_size: the supernet's training and accuracy resolution; None = `img_size`, except on the
            embedded digits (8x8 images) where it is at most 64: latency at 224 with accuracy at 64.
        lazy: per step, evaluate only new actions and the `lazy` best by their last drop (search/slimming.py);
            None or 0: every action, the paper's rule (about 45 evaluations per step on the paper space).
        stride: while a target is more than 1.5x away, one step takes the best actions together until the
            latency falls by this fraction (search/slimming.py); 0: one action per step (the paper).
        lut: a latency table built for the supernet's space (classes, resolution); None builds one.
        data, val_data: training images (BN recalibration) and held-out images; None = embedded digits.
        target: a model whose latency and parameters are the budget: mobilenetv2_100/_140, a registry
            name or alias (s0), a ModelConfig JSON or one of our checkpoints; built at the space's
            resolution and class count and measured on the table's runtime, threads and clock in this run.
        target_latency_ms, target_params: an explicit budget (each overrides the `target`'s); all None =
            `relative_*` of the largest subnet.
        mes: MES constants; `mes_relative` makes the reference subnet score exactly `mes.score`.
        eval_images, calib_images: held-out images per accuracy, training images per BN recalibration.
        threads: torch threads for the whole run (training, evaluation, the table). 1 by default: the
            table's CPU clock needs it, and a multi-threaded kernel stalls whenever another process holds
            one of its cores (README, "Search").
        runtime, clock, lut_warmup, lut_repeats, calibrate: how a table is built (search/lut.py,
            lut_validate.calibrate on `calibrate` subnets; 0 = predict with the plain sum).
    """

    output: str = "runs/search"
    supernet: str | None = None
    lut: str | None = None
    data: str | None = None
    val_data: str | None = None
    space: str = "tiny"
    img_size: int | None = None
    train_img_size: int | None = None
    supernet_epochs: int | None = None
    target: str | None = None
    target_latency_ms: float | None = None
    target_params: float | None = None
    relative_latency: float = 0.5
    relative_params: float = 0.5
    mes: MESConstants = PAPER_MES
    mes_relative: bool = False
    eval_images: int = 360
    calib_images: int = 256
    batch_size: int = 64
    runtime: str = "torch-fused"
    threads: int = 1
    clock: str = "cpu"
    lut_warmup: int = 5
    lut_repeats: int = 30
    calibrate: int = 20
    max_steps: int | None = None
    lazy: int | None = 8
    stride: float = 0.1
    device: str = "cpu"
    seed: int = 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _batches(dataset, count: int, batch_size: int, seed: int, img_size: tuple[int, int], crop_pct: float) -> list:
    """`count` fixed items of `dataset` (a seeded choice), resized and normalised, as (images, labels) batches."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    loader = DataLoader(AugmentedDataset(Subset(dataset, sorted(order)), EvalTransform(img_size, crop_pct)),
                        batch_size=batch_size)
    return [(images, labels) for images, labels in loader]


class SupernetAccuracy:
    """accuracy_of for the search: extract, recalibrate BN on training batches, top-1 (%) on held-out batches."""

    def __init__(self, supernet: Supernet, calib_batches: list, val_batches: list, device: torch.device) -> None:
        self.supernet = supernet.to(device).eval()
        self.calib_batches, self.val_batches, self.device = calib_batches, val_batches, device
        self.cache: dict[str, float] = {}

    def __call__(self, config: ModelConfig) -> float:
        key = signature(config)
        if key not in self.cache:
            model = recalibrate_bn(self.supernet.extract(self.supernet.adapt(config)), self.calib_batches)
            correct = total = 0
            with torch.no_grad():
                for images, labels in self.val_batches:
                    predicted = model(images.to(self.device)).argmax(dim=1).cpu()
                    correct += int((predicted == labels).sum())
                    total += len(labels)
            self.cache[key] = 100.0 * correct / total
        return self.cache[key]


def reference_config(space: SearchSpace) -> ModelConfig:
    """The space's counterpart of S0 (module docstring), at the space's base fields."""
    for name in REFERENCE_NAMES:
        config = get_config(name)
        if space.contains(config):
            return space.make_config(config.stages, name=f"{name.removeprefix('efficientformerv2_')} (reference)")
    return space.min_config().replace(name="smallest (reference)")


def _train_size(job: SearchJob) -> int:
    if job.train_img_size is not None:
        return job.train_img_size
    size = job.img_size or 64
    return min(size, 64) if job.data is None else size


def _supernet_epochs(job: SearchJob) -> int:
    if job.supernet_epochs is not None:
        return job.supernet_epochs
    return 3 if job.data is None and job.space != "tiny" else 6


def _supernet(job: SearchJob, out: Path) -> tuple[Supernet, Path]:
    if job.supernet is not None:
        return load_supernet(job.supernet), Path(job.supernet)
    run_dir = out / "supernet"
    if (run_dir / SUPERNET_FILE).is_file():  # written once, when the training has finished
        return load_supernet(run_dir / SUPERNET_FILE), run_dir / SUPERNET_FILE
    recipe = DEFAULT.replace(epochs=_supernet_epochs(job), img_size=_train_size(job), seed=job.seed)
    resume = "auto" if run_dir.exists() else None
    summary = train_supernet(TrainJob(output=str(run_dir), data=job.data, val_data=job.val_data, recipe=recipe,
                                      resume=resume, device=job.device), get_space(job.space))
    path = Path(summary.get("supernet", run_dir / SUPERNET_FILE))
    return load_supernet(path), path


def _table(job: SearchJob, space: SearchSpace, out: Path) -> LatencyTable:
    if job.lut is not None:
        return LatencyTable.load(job.lut)
    table = build_lut(space, job.runtime, path=out / "lut.json", warmup=job.lut_warmup, repeats=job.lut_repeats,
                      threads=job.threads, clock=job.clock)
    if job.calibrate and "calibration" not in table.header:
        calibrate(table, calibration_configs(space, job.calibrate))
        table.save()
    return table


def _target_module(name: str, space: SearchSpace) -> tuple[str, nn.Module]:
    """(display name, eval-mode module) of a `--target` of either family, at the space's resolution and class count."""
    try:
        spec = resolve_spec(name)
    except (KeyError, ValueError, OSError) as error:
        raise ConfigError(f"--target {name!r} cannot be built: {error}; give mobilenetv2_100, mobilenetv2_140, a "
                          f"registry name (s0), a model config JSON or a checkpoint") from None
    return spec.name, _network(spec, space)


def _network(spec: ModelSpec, space: SearchSpace) -> nn.Module:
    """The eval-mode network of `spec` at the space's resolution and class count (fresh weights: latency only)."""
    return build_model(spec, num_classes=space.base.num_classes, img_size=space.base.img_size).eval()


def target_budget(name: str, table: LatencyTable, space: SearchSpace) -> tuple[str, float, int]:
    """(model name, measured latency ms, parameters) of the target model on the table's runtime and settings."""
    label, module = _target_module(name, space)
    example = torch.randn(1, space.base.in_chans, *space.base.img_size)
    try:
        latency = measure_modules(table, {label: (module, example)}, progress=False)[label][0]
    except Exception as error:  # any runtime's export or load error
        raise ConfigError(f"--target {name!r} cannot run on {table.runtime}: {type(error).__name__}: {error}") from None
    return label, latency, param_count(module)


def _references(space: SearchSpace, accuracy_of, params_of, latency_of, mes: MESConstants) -> list[Reference]:
    """The reference subnet and the published variants in the space, scored on the table's prediction."""
    configs = [reference_config(space)]
    configs += [space.make_config(get_config(n).stages, name=n.removeprefix("efficientformerv2_"))
                for n in PUBLISHED if space.contains(get_config(n)) and configs[0].stages != get_config(n).stages]
    references = []
    for config in configs:
        params, latency = params_of(config), latency_of(config)
        references.append(Reference(config.name, latency, params, mobile_efficiency_score(params, latency, mes),
                                    accuracy_of(config)))
    return references


def run_search(job: SearchJob) -> dict[str, Any]:
    """Run (or resume) the whole search; returns the summary also written to `summary.json`."""
    with threads(job.threads):
        return _run(job)


def _run(job: SearchJob) -> dict[str, Any]:
    out = Path(job.output)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(job.device)
    supernet, supernet_path = _supernet(job, out)
    space = supernet.space  # at the accuracy resolution
    deploy = space if job.img_size is None else space.replace_base(img_size=(job.img_size, job.img_size))
    table = _table(job, deploy, out)
    table.check_config(deploy.max_config())
    counter = ParamCounter()

    def params_of(config: ModelConfig) -> int:  # parameters and latency at the deployed resolution
        return counter(config.replace(img_size=deploy.base.img_size))

    def latency_of(config: ModelConfig) -> float:
        return table.predict(config.replace(img_size=deploy.base.img_size))

    size = space.base.img_size
    data = run_datasets(job.data, img_size=size[0], val_data=job.val_data)
    if len(data.classes) != space.base.num_classes:
        raise ConfigError(f"the supernet {supernet_path} predicts {space.base.num_classes} classes but "
                          f"{job.data or 'the embedded digits'} has {len(data.classes)}")
    crop = 1.0 if data.eval_crop_pct is None else data.eval_crop_pct
    calib = _batches(data.train, job.calib_images, job.batch_size, job.seed, size, crop)
    val = _batches(data.val, job.eval_images, job.batch_size, job.seed + 1, size, crop)
    accuracy_of = SupernetAccuracy(supernet, calib, val, device)

    reference = reference_config(space)
    mes = job.mes
    if job.mes_relative:
        mes = mes.relative_to(params_of(reference), latency_of(reference))
    largest = space.max_config()
    target_latency, target_params = job.target_latency_ms, job.target_params
    target = None
    if job.target is not None:
        target = target_budget(job.target, table, deploy)
        target_latency = target[1] if target_latency is None else target_latency
        target_params = target[2] if target_params is None else target_params
    elif target_latency is None and target_params is None:
        target_latency = job.relative_latency * latency_of(largest)
        target_params = job.relative_params * params_of(largest)
    fingerprint = {"supernet": _sha256(supernet_path), "lut": {"runtime": table.runtime, "entries": len(table.entries),
                   "calibration": table.calibration, "date": table.header.get("date")},
                   "data": data.describe, "eval_images": len(sum((b[1].tolist() for b in val), [])),
                   "calib_images": job.calib_images, "seed": job.seed}
    result = slim(space, accuracy_of, latency_of, params_of, target_latency_ms=target_latency,
                  target_params=target_params, mes=mes, max_steps=job.max_steps, lazy=job.lazy,
                  stride=job.stride,
                  state_path=out / "search_state.json", fingerprint=json.loads(json.dumps(fingerprint, default=str)))
    accuracy_of.cache.update(result.accuracies)  # the references need no second evaluation after a resume
    return _write_outputs(job, out, space, deploy, table, result, accuracy_of, params_of, latency_of, mes,
                          target_latency, target_params, target)


def _row(name: str, step_or_ref) -> dict[str, Any]:
    return {"name": name, "params": step_or_ref.params, "latency_ms": step_or_ref.latency_ms, "mes": step_or_ref.mes,
            "accuracy": step_or_ref.accuracy}


MOBILENET = "mobilenetv2_100"
MOBILENET_ROW = "MobileNetV2 x1.0 (measured)"


def _measured(table: LatencyTable, space: SearchSpace, found: ModelConfig, target: str | None
              ) -> tuple[dict[str, float], dict[str, int]]:
    """Latency (ms, measured end to end) and parameters of the found network, the reference, MobileNetV2 x1.0
    and the target, all interleaved in one session of the table's runtime: their ratios are like with like
    (separate sessions of the same model differed by up to 19% on the shared 2-core machine)."""
    reference = reference_config(space)
    modules = {"found": _network(found, space), reference.name: _network(reference, space),
               MOBILENET_ROW: _network(resolve_spec(MOBILENET), space)}
    label, module = (None, None) if target is None else _target_module(target, space)
    if label not in (None, MOBILENET):  # MobileNetV2 x1.0 as the target is the row above, measured once
        modules[f"{label} (target)"] = module
    example = torch.randn(1, space.base.in_chans, *space.base.img_size)
    measured = measure_modules(table, {name: (m, example) for name, m in modules.items()}, progress=False)
    latency = {name: median for name, (median, _) in measured.items()}
    params = {name: param_count(m) for name, m in modules.items()}
    if label == MOBILENET:
        latency[f"{label} (target)"], params[f"{label} (target)"] = latency[MOBILENET_ROW], params[MOBILENET_ROW]
    return latency, params


def _rows(found: Step, start: Step, references: list[Reference], measured: dict[str, float],
          measured_params: dict[str, int], mes: MESConstants) -> list[dict[str, Any]]:
    """The summary's table: `latency_ms` and `mes` are the table's prediction (None for a model outside the
    space), `measured_ms` and `measured_mes` come from the one end-to-end session (None where not measured)."""
    rows = []
    predicted = [("found", found), ("largest (start)", start)] + [(r.name, r) for r in references]
    for name, item in predicted:
        rows.append({**_row(name, item), "measured_ms": measured.get(name)})
    rows += [{"name": name, "params": measured_params[name], "latency_ms": None, "mes": None, "accuracy": None,
              "measured_ms": ms} for name, ms in measured.items() if name not in dict(predicted)]
    for row in rows:
        ms = row["measured_ms"]
        row["measured_mes"] = None if ms is None else mobile_efficiency_score(row["params"], ms, mes)
    return rows


def _write_outputs(job: SearchJob, out: Path, space: SearchSpace, deploy: SearchSpace, table: LatencyTable,
                   result: SlimResult, accuracy_of, params_of, latency_of, mes: MESConstants, target_latency,
                   target_params, target: tuple[str, float, int] | None = None) -> dict[str, Any]:
    found: Step = result.found
    write_trajectory_csv(result.steps, out / "trajectory.csv")
    references = _references(space, accuracy_of, params_of, latency_of, mes)
    measured, measured_params = _measured(table, deploy, found.config.replace(img_size=deploy.base.img_size),
                                          job.target)
    rows = _rows(found, result.steps[0], references, measured, measured_params, mes)
    # On the plot, a line at each measured-only latency; MobileNetV2 as the target is drawn once, as the target.
    twice = {MOBILENET_ROW} if f"{MOBILENET} (target)" in measured else set()
    references += [Reference(row["name"], row["measured_ms"], row["params"], row["measured_mes"])
                   for row in rows if row["latency_ms"] is None and row["name"] not in twice]
    deployed = dataclasses.replace(found, config=found.config.replace(img_size=deploy.base.img_size))
    found_path = write_found(space.name, deployed, out, extra={
        "lut_runtime": table.runtime, "lut_clock": table.header.get("clock"), "targets_met": result.targets_met,
        "target_latency_ms": target_latency, "target_params": target_params,
        "accuracy_img_size": list(space.base.img_size)})
    png = plot_pareto(result.steps, out / "pareto.png", references=references, target_latency_ms=target_latency,
                      title=f"{space.name} space, {table.runtime} ({table.header.get('clock', 'wall')} clock, "
                            f"{table.header['threads']} thread(s)), {table.header['img_size'][0]} px",
                      latency_label=f"predicted latency on {table.runtime} (ms, LUT)")
    summary = {
        "found": str(found_path), "targets_met": result.targets_met, "stop_reason": result.stop_reason,
        "steps": len(result.steps) - 1, "evaluations_this_run": result.evaluations,
        "targets": {"latency_ms": target_latency, "params": target_params}, "mes": dataclasses.asdict(mes),
        "rows": rows,
        "target": None if target is None else {
            # The budget: the target measured alone at the start, before the search (it needs one).
            "model": target[0], "measured_latency_ms": target[1], "params": target[2],
            # Measured in the one session with the found network (not the table's prediction).
            "found_measured_ms": measured["found"], "target_measured_ms": measured[f"{target[0]} (target)"],
            "measured_met": measured["found"] <= measured[f"{target[0]} (target)"] and found.params <= target[2]},
        "trajectory": str(out / "trajectory.csv"), "pareto": None if png is None else str(png),
        "lut": str(table.path) if table.path else None, "lut_runtime": table.runtime, "space": space.name,
    }
    write_json(out / "summary.json", summary, default=str)
    return summary


__all__ = ["SearchJob", "SupernetAccuracy", "reference_config", "run_search"]
