"""The `fercomp` command line: thin Typer wrappers over the library functions.

Each command maps flags to a config, calls one library function and renders the result. A
user's mistake (FercompError, or a flag Click rejects) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer
from rich.table import Table

from . import __version__
from .cli_options import DATA_HELP, Amp, Device, parse_model_args as _parse_model_args
from .errors import ConfigError, FercompError, interrupted_exit_code, terminate_as_interrupt
from .ui import console

try:  # Typer >= 0.20 vendors Click as typer._click
    from typer._click.exceptions import ClickException
except ImportError:  # older Typer depends on Click itself
    from click.exceptions import ClickException

app = typer.Typer(
    name="fercomp",
    help="Train, compress, export and benchmark facial-emotion-recognition models for the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect data sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_ARGV: list[str] = []  # this invocation's arguments (see _launch_processes)

def _class_map(text: Optional[str]) -> Optional[dict[str, str]]:
    if not text:
        return None
    from .data import parse_class_map

    return parse_class_map(text)


def _pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


# Flags that may differ when resuming: they change where and how visibly a run trains, not what it learns.
RESUME_MAY_CHANGE = {"resume", "epochs", "threads", "progress", "device", "amp", "nproc", "compile"}


def _changed_on_resume(ctx: typer.Context) -> list[str]:
    """The flags given on the command line besides those a resume may change."""
    from typer._click.core import ParameterSource

    return [f"--{name.replace('_', '-')}" for name in ctx.params
            if name not in RESUME_MAY_CHANGE and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]


@app.command()
def train(
    ctx: typer.Context,
    model: str = typer.Option("separable_cnn", help="registry name (see `fercomp models`)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    labels: str = typer.Option("fer2013", help="fer2013 | ferplus (plurality, 7 classes) | ferplus-soft | ferplus8 (FER+ majority rule, 8 classes with contempt) | ferplus8-soft"),
    ferplus_csv: Optional[str] = typer.Option(None, help="fer2013new.csv with FER+ votes (for --labels ferplus*)"),
    class_map: Optional[str] = typer.Option(None, help="folder=class,... e.g. 'anger=angry,contempt=contempt,neutral=drop'"),
    epochs: Optional[int] = typer.Option(None, help="epochs (default: the model's recommended); with --resume: "
                                         "train the run to this many epochs"),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    optimizer: Optional[str] = typer.Option(None, help="sgd | adamw"),
    schedule: Optional[str] = typer.Option(None, help="cosine | step | plateau | constant"),
    weight_decay: Optional[float] = typer.Option(None),
    label_smoothing: Optional[float] = typer.Option(None),
    augment: Optional[str] = typer.Option(None, help="none | flip | geometric | erase (geometric + random erasing) | strong (erase + brightness/contrast)"),
    warmup_epochs: Optional[int] = typer.Option(None),
    class_weights: bool = typer.Option(False, "--class-weights", help="weight the loss by inverse class frequency"),
    balanced_sampler: bool = typer.Option(False, "--balanced-sampler", help="sample batches class-balanced"),
    early_stop: Optional[int] = typer.Option(None, help="stop after N epochs without val improvement"),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    device: Device = None,
    amp: Amp = None,
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="NHWC activations (faster on CPU)"),
    out: Optional[str] = typer.Option(None, help="run folder (default artifacts/<model>[-N])"),
    resume: Optional[str] = typer.Option(None, help="continue an interrupted run folder with its saved settings "
                                         "(--epochs N also extends a finished one)"),
    model_arg: list[str] = typer.Option([], "--model-arg", help="model kwarg KEY=VALUE (repeatable), e.g. width=32"),
    pretrained: bool = typer.Option(False, "--pretrained", help="ImageNet weights from the local torchvision cache"),
    weights: Optional[str] = typer.Option(None, help="initial weights file (state dict) for transfer models"),
    freeze: int = typer.Option(0, help="freeze the first N stages of a transfer model"),
    head_epochs: int = typer.Option(0, help="two-phase transfer: train only the head for N epochs, then unfreeze"),
    unfreeze: Optional[int] = typer.Option(None, help="two-phase: stages to unfreeze after the head phase (default all)"),
    finetune_lr: Optional[float] = typer.Option(None, help="two-phase: peak lr after the head phase (default lr/10)"),
    val_fraction: float = typer.Option(0.1, help="validation carved from train when the source has none"),
    synthetic_per_class: int = typer.Option(300, help="synthetic faces per class"),
    extra_data: Optional[str] = typer.Option(None, help="more train images, e.g. `fercomp gan sample` output (never in val/test)"),
    mix: str = typer.Option("none", help="none | mixup | cutmix: blend or patch each batch with a shuffled copy"),
    mix_alpha: Optional[float] = typer.Option(None, help="with --mix: Beta(alpha, alpha) (default 0.2 mixup, 1.0 cutmix)"),
    teacher: Optional[str] = typer.Option(None, help="distil from this model too: zoo:NAME, a run folder or a .pt; "
                                          "A,B,... for an ensemble"),
    teacher_views: int = typer.Option(0, help="with --teacher: compute the teachers' outputs (flip TTA) once on N "
                                              "fixed augmented views and train on those (0: score every batch)"),
    ema: Optional[float] = typer.Option(None, help="keep an exponential moving average of the weights (e.g. 0.999); "
                                        "it is validated and saved"),
    swa_epochs: int = typer.Option(0, help="average the weights of the last N epochs (BatchNorm recomputed on the "
                                           "clean train images) and keep the average if it beats the best epoch on val"),
    temperature: float = typer.Option(4.0, help="with --teacher: distillation temperature"),
    distill_alpha: float = typer.Option(0.7, help="with --teacher: weight of the teacher's soft targets"),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="several GPUs: BatchNorm statistics over the global batch"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the training step (falls back to eager "
                                                          "with a warning where it fails)"),
    nproc: int = typer.Option(1, help="train in N processes on this machine (torchrun's launcher; "
                                      "--batch-size is the global batch)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a model into a run folder (checkpointed every epoch, resumable)."""
    from .train import TrainConfig, fit

    if nproc != 1:
        raise typer.Exit(_launch_processes(nproc))

    kwargs = _parse_model_args(model_arg)
    if pretrained:
        kwargs["pretrained"] = True
    if weights:
        kwargs["weights"] = weights
    if freeze:
        kwargs["freeze"] = freeze
    cfg = TrainConfig(
        model=model, model_kwargs=kwargs, data=data, labels=labels, class_map=_class_map(class_map),
        ferplus_csv=ferplus_csv, val_fraction=val_fraction, synthetic_per_class=synthetic_per_class,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
        weight_decay=weight_decay, label_smoothing=label_smoothing, augment=augment,
        warmup_epochs=warmup_epochs, class_weights=class_weights, balanced_sampler=balanced_sampler,
        early_stop=early_stop, seed=seed, threads=threads, out=out, channels_last=channels_last,
        extra_data=extra_data, head_epochs=head_epochs, unfreeze=unfreeze, finetune_lr=finetune_lr,
        mix=mix, mix_alpha=mix_alpha, distill_from=teacher, teacher_views=teacher_views, distill_temperature=temperature,
        distill_alpha=distill_alpha, ema=ema, swa_epochs=swa_epochs,
        device=device, amp=amp, sync_bn=sync_bn, compile=compile,
    )
    if resume:
        changed = _changed_on_resume(ctx)
        if changed:
            raise ConfigError(f"{', '.join(changed)}: --resume continues {resume} with its saved settings; "
                              "only --epochs (to train longer), --device, --amp, --threads and --progress may be "
                              "given with it")
    try:
        stage = _resumable_stage(resume) if resume else None
        if stage in ("qat", "prune") and epochs is not None:
            raise ConfigError(f"--epochs: a {stage} run resumes with its recorded recipe; it cannot be extended")
        if stage == "qat":
            from .compress.qat import resume_qat

            run = resume_qat(resume, progress=progress, device=device)
        elif stage == "prune":
            from .compress.prune import resume_prune

            run = resume_prune(resume, progress=progress, device=device, amp=amp)
        else:
            run = fit(cfg, resume=resume, progress=progress, extend_to=epochs if resume else None)
    except KeyboardInterrupt as exc:
        target = resume or cfg.out or f"artifacts/{model}[-N] (the run folder printed above)"
        console.print(f"interrupted; continue with: fercomp train --resume {target}")
        raise typer.Exit(interrupted_exit_code(exc))
    if int(os.environ.get("RANK", "0")) == 0:
        _print_run_summary(run)


def _launch_processes(nproc: int) -> int:
    """`fercomp train --nproc N ...` = `torchrun --standalone --nproc-per-node N -m fercomp.cli train ...`."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1 (got {nproc})")
    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc starts its own processes; under torchrun, leave it out")
    argv = list(_ARGV)
    for i, item in enumerate(argv):  # drop --nproc N / --nproc=N, keep everything else as typed
        if item == "--nproc":
            del argv[i : i + 2]
            break
        if item.startswith("--nproc="):
            del argv[i]
            break
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "fercomp.cli", *argv]
    return subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def _resumable_stage(path: str) -> Optional[str]:
    """Which stage's resume to call: QAT and prune runs record more than a training run at the end."""
    from .runs import Run

    try:
        manifest = Run.load(path).manifest
    except FercompError:
        return None  # fit reports the problem with the folder
    if manifest.get("quantize", {}).get("mode") == "qat":
        return "qat"
    return "prune" if manifest.get("stage") == "prune" else None


def _print_run_summary(run) -> None:
    m = run.manifest
    metrics = m.get("metrics", {})
    console.print(f"run folder: {run.path}", soft_wrap=True, highlight=False)
    table = Table(title=f"{m['model']['name']} on {m['data']['source']}", show_header=False)
    table.add_row("model", m["model"]["name"])
    table.add_row("params / MACs", f"{m['params']:,} / {m['macs'] / 1e6:.1f} M")
    table.add_row("epochs", f"{metrics.get('epochs_run')} (best {metrics.get('best_epoch')})")
    average = metrics.get("weight_average")
    if average:
        first, last = average["epochs"]
        table.add_row("kept", f"average of epochs {first}-{last} (val {_pct(average['val_acc'])})" if average["kept"]
                      else f"epoch {metrics.get('best_epoch')} (the average of {first}-{last}: val {_pct(average['val_acc'])})")
    table.add_row("val accuracy", _pct(metrics.get("val_acc")))
    table.add_row("test accuracy", _pct(metrics.get("test_acc")))
    table.add_row("test macro-F1", _pct(metrics.get("test_macro_f1")))
    table.add_row("train time", f"{metrics.get('train_time_s')} s ({metrics.get('mean_epoch_s')} s/epoch)")
    console.print(table)


@app.command()
def prune(
    run: str = typer.Argument(..., help="trained run folder to prune"),
    ratio: float = typer.Option(0.5, help="fraction of output channels removed from each prunable layer"),
    importance: str = typer.Option("l1", help="l1 | l2 | taylor | bn-scale"),
    global_pruning: bool = typer.Option(False, "--global", help="one ratio across all layers: weak layers lose more"),
    round_to: Optional[int] = typer.Option(None, help="round channel counts to a multiple (8 suits int8 / TensorRT)"),
    steps: int = typer.Option(1, help="reach --ratio in N prune + fine-tune rounds"),
    unstructured: bool = typer.Option(False, "--unstructured", help="global magnitude sparsity instead of channels"),
    sparsity: float = typer.Option(0.5, help="with --unstructured: fraction of weights set to zero"),
    pattern: Optional[str] = typer.Option(None, help="2:4 semi-structured sparsity (TensorRT sparse kernels)"),
    finetune_epochs: int = typer.Option(10, help="fine-tuning epochs with the parent's recipe (0: none)"),
    lr: Optional[float] = typer.Option(None, help="fine-tuning peak lr (default: a tenth of the parent's)"),
    distill: bool = typer.Option(False, "--distill", help="fine-tune against the parent's soft targets too"),
    temperature: float = typer.Option(4.0, help="distillation temperature"),
    alpha: float = typer.Option(0.7, help="weight of the distillation term (1 - alpha for the labels)"),
    out: Optional[str] = typer.Option(None, help="new run folder (default <parent>-p50, -s50, -sp24)"),
    data: Optional[str] = typer.Option(None, help="measure and fine-tune on this source (default: the parent's own; "
                                                  "a zoo model needs it)"),
    threads: Optional[int] = typer.Option(None),
    device: Device = None,
    amp: Amp = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Prune a trained run (channels, unstructured or 2:4), fine-tune it, and report the change."""
    from .compress import PruneConfig, prune_run

    cfg = PruneConfig(parent=run, ratio=ratio, importance=importance, global_pruning=global_pruning,
                      round_to=round_to, steps=steps, unstructured=unstructured, sparsity=sparsity,
                      pattern=pattern, finetune_epochs=finetune_epochs, lr=lr, distill=distill,
                      temperature=temperature, alpha=alpha, out=out, threads=threads, data=data,
                      device=device, amp=amp)
    result = prune_run(cfg, progress=progress)
    _print_prune_summary(result)


def _print_prune_summary(run) -> None:
    p = run.manifest["prune"]
    console.print(f"run folder: {run.path}", soft_wrap=True, highlight=False)
    table = Table(title=f"{p['method']}" + (f" ratio {p['ratio']}" if p.get("ratio") else ""))
    for col in ("", "params", "MACs", "val acc", "test acc"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("parent", p["before"]), ("after pruning", p["after_prune"])]
    if "after_finetune" in p:
        rows.append(("after fine-tuning", p["after_finetune"]))
    base = p["before"]
    for label, row in rows:
        table.add_row(label, f"{row['params']:,} ({row['params'] / base['params']:.2f}x)",
                      f"{row['macs'] / 1e6:.1f} M ({row['macs'] / base['macs']:.2f}x)",
                      _pct(row["accuracy"].get("val")), _pct(row["accuracy"].get("test")))
    console.print(table)
    if p.get("sparsity") is not None:
        console.print(f"weight sparsity {p['sparsity']:.1%}"
                      + (f", after fine-tuning {p['sparsity_after_finetune']:.1%}" if "sparsity_after_finetune" in p else ""))


@app.command()
def quantize(
    run: str = typer.Argument(..., help="float run folder (trained or pruned) to quantize"),
    mode: str = typer.Option("ptq", help="ptq (calibrate on training images) | qat (fine-tune with fake quantization)"),
    calib: int = typer.Option(512, help="training images used for calibration"),
    calib_method: str = typer.Option("minmax", help="minmax | percentile | entropy"),
    activations: str = typer.Option("u8-asym", help="u8-asym (ONNX Runtime CPU) | s8-sym (TensorRT explicit INT8; ptq and qat)"),
    weight_range: str = typer.Option("reduced", help="reduced: weights in [-64, 64], exact on every x86 CPU (int16 "
                                     "saturation without VNNI otherwise) | full: [-127, 127]"),
    epochs: int = typer.Option(5, help="qat: fine-tuning epochs (BN stats freeze at 60%, observers at 80%)"),
    lr: Optional[float] = typer.Option(None, help="qat: peak lr (default: a twentieth of the parent's)"),
    distill: bool = typer.Option(False, "--distill", help="qat: also learn the float parent's soft targets"),
    data: Optional[str] = typer.Option(None, help="calibrate / fine-tune on this source (default: the parent's own)"),
    out: Optional[str] = typer.Option(None, help="new run folder (default <parent>-int8)"),
    threads: Optional[int] = typer.Option(None),
    device: Device = None,
    amp: Amp = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """INT8 QDQ ONNX (per-channel weights, per-tensor activations), accuracy measured in ONNX Runtime."""
    from .compress.quantize import QuantizeConfig, quantize_run

    result = quantize_run(QuantizeConfig(parent=run, mode=mode, calib=calib, calib_method=calib_method,
                                         activations=activations, weight_range=weight_range, epochs=epochs, lr=lr,
                                         distill=distill, out=out, threads=threads, data=data, device=device, amp=amp),
                          progress=progress)
    q = result.manifest["quantize"]
    console.print(f"run folder: {result.path}", soft_wrap=True, highlight=False)
    table = Table(title=f"INT8 {q['mode']} ({q['activations']} activations)")
    for col in ("model", "val acc", "test acc"):
        table.add_column(col)
    labels = {"fp32_onnx": "FP32 (ONNX Runtime)", "torch_fake_quant": "fake-quant (torch)", "int8_onnx": "INT8 (ONNX Runtime)"}
    for key, acc in q["accuracy"].items():
        table.add_row(labels.get(key, key), _pct(acc.get("val")), _pct(acc.get("test")))
    console.print(table)
    if "fusion" in q:
        f = q["fusion"]
        console.print(f"fused by ONNX Runtime: {f['qlinear_conv']}/{f['convs']} Conv -> QLinearConv, "
                      f"{f['qlinear_add']} QLinearAdd, {f['float_add_left']} float Add left", highlight=False)


@app.command("export")
def export_cmd(
    run: str = typer.Argument(..., help="run folder (train, prune or quantize)"),
    opset: int = typer.Option(18, help="ONNX opset"),
    dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static-batch", help="any batch size, or batch 1 only"),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="simplify with onnxsim"),
    trt: bool = typer.Option(False, "--trt", help="also build a TensorRT engine (needs TensorRT and a GPU)"),
    fp16: bool = typer.Option(False, "--fp16", help="TensorRT engine in FP16"),
    int8: bool = typer.Option(False, "--int8", help="TensorRT engine in INT8 from the QDQ ONNX of a quantized run"),
    sparse: bool = typer.Option(False, "--sparse", help="let TensorRT use 2:4 sparse kernels (2:4-pruned runs)"),
    parity_images: Optional[int] = typer.Option(None, help="compare on the first N test images (default: all)"),
    max_batch: int = typer.Option(256, help="largest batch of the TensorRT profile"),
    workspace: int = typer.Option(1024, help="TensorRT builder workspace, MiB"),
    threads: Optional[int] = typer.Option(None),
    data: Optional[str] = typer.Option(None, help="parity images from this source (default: the run's own test split)"),
    formats: Optional[str] = typer.Option(None, "--format", help="onnx,openvino,litert,ncnn,tensorrt (several "
                                          "comma-separated; ONNX is always written, the others convert from it)"),
    ov_precision: str = typer.Option("auto", help="OpenVINO inference precision: auto (bf16 where the CPU has it) | f32"),
    ncnn_precision: str = typer.Option("fp32", help="NCNN weights and activations: fp32 | fp16"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """ONNX (+ onnxsim, checker, metadata) verified against PyTorch; optionally TensorRT, OpenVINO, LiteRT, NCNN."""
    from .deploy.export import ExportConfig, export_run
    from .deploy.formats import EDGE, parse_formats

    chosen = parse_formats(formats)
    trt = trt or "tensorrt" in chosen

    if fp16 and int8:
        raise ConfigError("--fp16 and --int8 are two precisions; pick one")
    precision = "fp16" if fp16 else "int8" if int8 else None
    report = export_run(ExportConfig(run=run, opset=opset, dynamic_batch=dynamic_batch, simplify=simplify, trt=trt,
                                     precision=precision, sparse=sparse, parity_images=parity_images,
                                     max_batch=max_batch, workspace_mib=workspace, threads=threads, data=data,
                                     formats=chosen, ov_precision=ov_precision, ncnn_precision=ncnn_precision),
                        progress=progress)
    p, o = report["parity"], report["onnx"]
    table = Table(title=f"fercomp export — {run}")
    for col in ("file", "size", "nodes", "compared with", "images", "top-1 agreement", "max |Δp|"):
        table.add_column(col, justify="left" if col in ("file", "compared with") else "right")
    table.add_row(o["file"], f"{o['bytes'] / 1e6:.2f} MB", str(o["nodes"]), p["against"], str(p["images"]),
                  f"{p['top1_agreement']:.2%}", f"{p['max_abs_prob_diff']:.1e}")
    trt_report = report.get("tensorrt") or {}
    if "parity" in trt_report:
        t = trt_report["parity"]
        table.add_row("model.engine", f"{trt_report['engine_bytes'] / 1e6:.2f} MB", "", t["against"], str(t["images"]),
                      f"{t['top1_agreement']:.2%}", f"{t['max_abs_prob_diff']:.1e}")
    for fmt in (f for f in chosen if f in EDGE and "parity" in (report.get(f) or {})):
        e = report[fmt]
        table.add_row(e["file"], f"{e['bytes'] / 1e6:.2f} MB", "", f"{e['parity']['against']}, acc "
                      f"{e['parity']['accuracy']:.2%}", str(e["parity"]["images"]), f"{e['parity']['top1_agreement']:.2%}",
                      f"{e['parity']['max_abs_prob_diff']:.1e}")
    console.print(table)


@app.command()
def deploy(
    run: str = typer.Argument(..., help="run folder (float or INT8)"),
    target: str = typer.Option("jetson", help="jetson (JetPack 6, TensorRT 10) | rpi (LiteRT or NCNN) | x86 (OpenVINO)"),
    runtime: Optional[str] = typer.Option(None, help="rpi: litert (default) | ncnn; x86: openvino"),
    out: Optional[str] = typer.Option(None, help="bundle path (default: <run>-<target>.tar.gz beside the run)"),
    precision: Optional[str] = typer.Option(None, help="fp32 | fp16 | int8 (default: int8 for INT8 runs, else fp16)"),
    sparse: Optional[bool] = typer.Option(None, "--sparse/--dense", help="2:4 sparse kernels (default: on for 2:4 runs)"),
    max_batch: int = typer.Option(64, help="largest batch of the engine's profile"),
    test_images: bool = typer.Option(True, "--test-images/--no-test-images", help="ship the test split for on-board accuracy"),
    data: Optional[str] = typer.Option(None, help="test images from this source (default: the run's own; a zoo model "
                                                  "needs it)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """A bundle a board uses without fercomp: the model, a board runtime + benchmark, the face detector, README."""
    from .deploy.bundle import DeployConfig, deploy_run

    result = deploy_run(DeployConfig(run=run, target=target, out=out, precision=precision, sparse=sparse,
                                     max_batch=max_batch, test_images=test_images, runtime=runtime, data=data),
                        progress=progress)
    table = Table(title=f"fercomp deploy — {result['bundle']} ({result['precision']})")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for name, size in sorted(result["files"].items()):
        table.add_row(f"{result['folder']}/{name}", f"{size:,}")
    console.print(table)
    then = ("./build_engine.sh && python3 -m fercomp_board.bench" if target == "jetson"
            else "pip install -r requirements.txt && python3 -m fercomp_board.edge_bench")
    console.print(f"on the board: tar xzf {result['bundle']} && cd {result['folder']} && {then}",
                  soft_wrap=True, highlight=False)


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers (got {text!r})") from None
    if not values:
        raise ConfigError(f"{flag} expects at least one value")
    return values


@app.command()
def bench(
    runs: Optional[list[str]] = typer.Argument(None, help="run folders (a family: baseline, pruned, INT8 ...)"),
    backends: str = typer.Option("torch,onnxruntime,tensorrt", help="comma-separated backends (also openvino, "
                                 "litert, ncnn: run `fercomp export RUN --format ...` first)"),
    ov_precision: str = typer.Option("auto", help="OpenVINO inference precision: auto | f32"),
    batch_sizes: str = typer.Option("1,64", help="batch 1 gives latency, the larger ones throughput"),
    threads: int = typer.Option(2, help="threads for every backend, fixed and stated"),
    data: Optional[str] = typer.Option(None, help="accuracy on this source (default: each run's own data)"),
    split: str = typer.Option("test"),
    warmup: int = typer.Option(10),
    iters: int = typer.Option(100),
    out: str = typer.Option("artifacts/bench-report", help="folder for report.md, report.json, pareto.png"),
    peak: bool = typer.Option(True, "--peak/--no-peak", help="measure this host's FP32/INT8 peak for the %-of-peak column"),
    merge: Optional[list[str]] = typer.Option(None, "--merge", help="combine report.json files from several devices"),
    device: Device = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Params, MACs, size, accuracy, latency, throughput and memory per model x backend x batch; ratios to the root."""
    from .bench import BenchConfig
    from .bench.report import terminal_table
    from .bench.run import merge as merge_reports
    from .bench.run import run_bench

    if merge:
        if runs:
            raise ConfigError("--merge combines existing reports; give either run folders or --merge files")
        report = merge_reports(list(merge), out)
    else:
        if not runs:
            raise ConfigError("name at least one run folder to benchmark (or --merge reports)")
        cfg = BenchConfig(models=list(runs), backends=tuple(b.strip() for b in backends.split(",") if b.strip()),
                          batch_sizes=_int_list(batch_sizes, "--batch-sizes"), threads=threads, data=data,
                          split=split, warmup=warmup, iters=iters, device=device,
                          ov_precision=ov_precision)
        report = run_bench(cfg, out, peak=peak, progress=progress)
    console.print(terminal_table(report))
    for kind, path in report["files"].items():
        console.print(f"{kind}: {path}", highlight=False)


@app.command()
def ensemble(
    runs: list[str] = typer.Argument(..., help="two or more float run folders with the same classes"),
    out: str = typer.Option(..., help="the ensemble's run folder"),
    weights: Optional[str] = typer.Option(None, help="comma-separated member weights (default: equal)"),
    device: Device = None,
) -> None:
    """A soft-voting ensemble saved as a run of its own (evaluate, export as one ONNX, bench, predict)."""
    from .train.ensemble import EnsembleConfig, ensemble_runs

    parsed = None
    if weights:
        try:
            parsed = [float(w) for w in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights expects comma-separated numbers (got {weights!r})") from None
    run = ensemble_runs(EnsembleConfig(runs=list(runs), out=out, weights=parsed, device=device))
    table = Table(title=f"fercomp ensemble — {run.path}")
    for col in ("member", "weight", "test acc"):
        table.add_column(col, justify="left" if col == "member" else "right")
    m = run.manifest
    total = sum(m["weights"])
    for (name, acc), w in zip(m["metrics"]["members"].items(), m["weights"]):
        table.add_row(name, f"{w / total:.2f}", _pct(acc))
    table.add_section()
    table.add_row("ensemble", "", _pct(m["metrics"]["test_acc"]))
    console.print(table)


@app.command()
def evaluate(
    run: str = typer.Argument(..., help="run folder or .pt checkpoint"),
    data: Optional[str] = typer.Option(None, help="another data source (default: the run's own)"),
    split: str = typer.Option("test", help="train | val | test | all"),
    backend: Optional[str] = typer.Option(None, help="torch | onnxruntime | openvino | litert | ncnn "
                                          "(default: the run's deliverable)"),
    ov_precision: str = typer.Option("auto", help="OpenVINO inference precision: auto | f32"),
    threads: Optional[int] = typer.Option(None),
    tta: Optional[str] = typer.Option(None, help="test-time augmentation: flip | shift | flip-shift (mean of the views)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    device: Device = None,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (PNG + JSON)."""
    from .train import evaluate_run

    report = evaluate_run(run, data=data, split=split, threads=threads, backend=backend, tta=tta, device=device,
                          ov_precision=ov_precision)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"{run} — {split} ({report['source']}, n={report['n']}, {report['backend']})")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for name, row in report["per_class"].items():
        table.add_row(name, _pct(row["precision"]), _pct(row["recall"]), _pct(row["f1"]), str(row["support"]))
    table.add_section()
    table.add_row("accuracy", "", "", _pct(report["accuracy"]), str(report["n"]))
    table.add_row("macro-F1", "", "", _pct(report["macro_f1"]), "")
    console.print(table)
    cm = Table(title="confusion (rows: true, columns: predicted)")
    cm.add_column("")
    for name in report["class_names"]:
        cm.add_column(name[:7], justify="right")
    for name, row in zip(report["class_names"], report["confusion"]):
        cm.add_row(name, *map(str, row))
    console.print(cm)


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="print as JSON on stdout"),
) -> None:
    """The model registry (name, parameters and MACs at its input size) and the pretrained zoo models."""
    from . import zoo
    from .models import create, list_models, model_description, count_macs, count_params

    rows = []
    for name in list_models():
        model = create(name)
        pretrained = [f"{zoo.PREFIX}{z}" for z in zoo.names() if zoo.card(z)["architecture"] == name]
        rows.append({
            "name": name, "params": count_params(model), "macs": count_macs(model),
            "input": "x".join(map(str, model.input_size)), "description": model_description(name),
            "pretrained": pretrained,
        })
    cards = {name: zoo.card(name) for name in zoo.names()}
    if as_json:
        sys.stdout.write(json.dumps({"architectures": rows, "zoo": cards}, indent=2) + "\n")
        return
    table = Table(title="fercomp models (input 1x48x48 grayscale)")
    for col in ("name", "params", "MACs", "pretrained", "description"):
        table.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f} M", ", ".join(r["pretrained"]) or "—",
                      r["description"])
    console.print(table)
    if cards:
        console.print(_zoo_table(cards, zoo.index().get("default")))


def _zoo_table(cards: dict[str, dict], default: Optional[str]) -> Table:
    from . import zoo

    table = Table(title="pretrained (zoo:NAME works wherever a run folder does; PrivateTest, no TTA)")
    for col in ("zoo model", "architecture", "params", "precision", "labels", "test acc", "macro-F1", "ORT b1 p50"):
        table.add_column(col, justify="left" if col in ("zoo model", "architecture", "precision") else "right")
    for name, c in cards.items():
        p50 = c["latency"].get("onnxruntime_b1", {}).get("p50_ms")
        table.add_row(f"zoo:{name}" + (" (default)" if name == default else ""), c["architecture"],
                      f"{c['params']:,}", c["precision"], zoo.labels_of(c), _pct(c["test"]["accuracy"]),
                      _pct(c["test"]["macro_f1"]), "—" if p50 is None else f"{p50:.3f} ms")
    return table


@data_app.command("info")
def data_info_cmd(
    source: str = typer.Argument(..., help=DATA_HELP),
    labels: str = typer.Option("fer2013"),
    ferplus_csv: Optional[str] = typer.Option(None),
    class_map: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts per split and class, blank and duplicate images."""
    from .data import data_info, load_data, render_data_info

    info = data_info(load_data(source, labels=labels, ferplus_csv=ferplus_csv, class_map=_class_map(class_map)))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    for table in render_data_info(info):
        console.print(table)


@app.command()
def pipeline(
    model: str = typer.Option("separable_cnn"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default: short on synthetic data)"),
    prune_ratio: float = typer.Option(0.5, help="fraction of channels removed by the prune stage"),
    finetune_epochs: Optional[int] = typer.Option(None, help="fine-tuning epochs after pruning"),
    out: str = typer.Option("artifacts/pipeline", help="folder for every stage's run"),
    threads: Optional[int] = typer.Option(None),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Every stage end to end (train, prune, quantize, export, bench, deploy), then the summary tables."""
    from .pipeline import PipelineConfig, run_pipeline

    result = run_pipeline(PipelineConfig(model=model, data=data, epochs=epochs, prune_ratio=prune_ratio,
                                         finetune_epochs=finetune_epochs, out=out, threads=threads), progress=progress)
    table = Table(title=f"fercomp pipeline — {result['data']}")
    for col in ("stage", "params", "MACs", "backend", "val acc", "test acc", "macro-F1", "time"):
        table.add_column(col, no_wrap=col == "stage")
    first = result["stages"][0]
    for row in result["stages"]:
        table.add_row(row["stage"], f"{row['params']:,} ({row['params'] / first['params']:.2f}x)",
                      f"{row['macs'] / 1e6:.2f} M ({row['macs'] / first['macs']:.2f}x)", row["backend"],
                      _pct(row.get("val_acc")), _pct(row.get("test_acc")), _pct(row.get("test_macro_f1")),
                      f"{row['time_s']:.0f} s")
    console.print(table)
    for row in result["stages"]:
        console.print(f"{row['stage']}: {row['run']}", soft_wrap=True, highlight=False)
    from .bench.report import terminal_table

    console.print(terminal_table(result["bench"]))
    console.print(f"bench report: {result['bench']['files']['md']}; Jetson bundle: {result['bundle']}",
                  soft_wrap=True, highlight=False)


@app.command()
def predict(
    sources: list[str] = typer.Argument(..., metavar="SOURCE...",
                                        help="images, folders (recursive), videos, or a webcam index such as 0"),
    model: Optional[str] = typer.Option(None, help="zoo:NAME, run folder, .pt, .onnx or TensorRT .engine "
                                                   "(default: the default zoo model)"),
    out: Optional[str] = typer.Option(None, help="output folder (default artifacts/predict/<timestamp>)"),
    backend: Optional[str] = typer.Option(None, help="torch | onnxruntime | tensorrt | openvino | litert | ncnn "
                                          "(default: the model's own)"),
    ov_precision: str = typer.Option("auto", help="OpenVINO inference precision: auto (bf16 where the CPU has it) | f32"),
    every: int = typer.Option(1, help="videos and webcams: analyse every Nth frame"),
    detect: bool = typer.Option(True, "--detect/--no-detect", help="find faces, or take each image as one face crop"),
    detector: str = typer.Option("blazeface", help="blazeface (short range, fast) | blazeface-full (small, far "
                                                   "faces) | haar (OpenCV's cascade)"),
    margin: Optional[float] = typer.Option(None, help="added around each detected face, as a fraction of its size "
                                                      "(default: the detector's own)"),
    detect_every: int = typer.Option(1, help="videos and webcams: detect every Nth analysed frame, track between"),
    smooth: int = typer.Option(1, help="videos and webcams: average each tracked face's probabilities over its "
                                       "last N frames"),
    pipeline: bool = typer.Option(True, "--pipeline/--no-pipeline",
                                  help="videos: decode, detect and classify in overlapping threads"),
    level: bool = typer.Option(True, "--level/--no-level", help="turn each face upright by its eyes (BlazeFace)"),
    threads: Optional[int] = typer.Option(None),
    batch_size: int = typer.Option(64, help="face crops per inference batch"),
    annotate: bool = typer.Option(True, "--annotate/--no-annotate", help="write copies with boxes and labels"),
    max_frames: Optional[int] = typer.Option(None, help="stop each video or webcam after N analysed frames"),
    device: Device = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Emotions of the faces in images, folders, videos or a webcam: a CSV, annotated copies, a summary."""
    from . import zoo
    from .deploy.predict import PredictConfig, predict_sources

    if model is None:
        model = f"{zoo.PREFIX}{zoo.default_name()}"
        zoo.resolve(model)  # verified before anything is said or written
        card = zoo.card(model[len(zoo.PREFIX):])
        console.print(f"model: {model} ({card['architecture']}, {card['params']:,} params, "
                      f"{card['test']['accuracy']:.2%} on {zoo.label_source(card)} PrivateTest); --model picks another",
                      highlight=False, soft_wrap=True)
    summary = predict_sources(PredictConfig(sources=sources, model=model, out=out, backend=backend, every=every,
                                            detect=detect, detector=detector, margin=margin,
                                            detect_every=detect_every, smooth=smooth, pipeline=pipeline, level=level,
                                            threads=threads, batch_size=batch_size,
                                            annotate=annotate, max_frames=max_frames, device=device,
                                            ov_precision=ov_precision),
                              progress=progress)
    detected = f", {summary['detector']}" if summary["detector"] else ""
    precision = f" {summary['inference_precision']}" if summary.get("inference_precision") else ""
    table = Table(title=f"fercomp predict ({summary['backend']}{precision}{detected})")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["per_class"].items():
        table.add_row(name, str(count), f"{count / summary['faces']:.1%}" if summary["faces"] else "—")
    table.add_section()
    table.add_row("faces", str(summary["faces"]))
    table.add_row("files / video frames", f"{summary['files']} / {summary['frames']}")
    table.add_row("no face found", str(summary["no_face"]))
    table.add_row("unreadable", str(summary["errors"]))
    if summary["stream_fps"]:
        table.add_row("video frames per second", f"{summary['stream_fps']:.1f}")
    console.print(table)
    console.print(f"predictions: {summary['csv']}", soft_wrap=True, highlight=False)
    if summary["annotated_dir"] and summary["annotated"]:
        console.print(f"annotated:   {summary['annotated_dir']}", soft_wrap=True, highlight=False)


from .cli_gan import gan_app  # noqa: E402  (sub-commands defined after `app` exists)

from .cli_explain import explain_cmd  # noqa: E402
from .cli_search import search_cmd  # noqa: E402

app.add_typer(gan_app, name="gan")
app.command("search")(search_cmd)
app.command("explain")(explain_cmd)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"fercomp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="print the version"),
) -> None:
    pass


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    terminate_as_interrupt()  # SIGTERM stops a stage the way Ctrl-C does: run marked interrupted, exit 143
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)  # `train --nproc` relaunches these arguments
    try:
        result = app(args=argv, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except FercompError as exc:
        console.print(f"error: {exc}", style="red", highlight=False, markup=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console.print("aborted", highlight=False)
        return 130
    except KeyboardInterrupt as exc:
        console.print("interrupted" if interrupted_exit_code(exc) == 130 else "terminated", highlight=False)
        return interrupted_exit_code(exc)
    except ClickException as exc:
        console.print(f"error: {exc.format_message()}", style="red", highlight=False, markup=False, soft_wrap=True)
        return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
