"""`fercomp ensemble RUN… --out RUN`: a soft-voting ensemble of trained runs, saved as a run of its own.

The ensemble run holds one model.pt (`models.ensemble.SoftVotingEnsemble`, every member inside),
so `evaluate`, `export` (one ONNX), `bench` and `predict` treat it like any run. Members must
agree on classes, input size and normalisation; its data is the first member's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..device import resolve_device
from ..errors import ConfigError, RunError
from ..models import count_macs, count_params
from ..models.ensemble import ENSEMBLE, SoftVotingEnsemble
from ..runs import Run, removed_on_failure
from .evaluate import data_for_run, reports_by_split, training_config, write_evaluation


@dataclass
class EnsembleConfig:
    runs: list[str]
    out: str
    weights: list[float] | None = None
    device: str | None = None  # where the members are evaluated (--device); the saved model is device-free

    def validate(self) -> None:
        resolve_device(self.device)
        if len(self.runs) < 2:
            raise ConfigError("an ensemble needs at least two runs")
        if self.weights is not None and len(self.weights) != len(self.runs):
            raise ConfigError(f"--weights needs one weight per run ({len(self.runs)}), got {len(self.weights)}")


def _members(paths: list[str]) -> tuple[list[Run], list, list[dict]]:
    runs, models, specs = [], [], []
    for path in paths:
        run = Run.load(path).require_complete()
        if run.stage == "quantize":
            raise RunError(f"{run.path}: an INT8 run has no PyTorch model to ensemble; use its float parent")
        model, spec = run.load_model()
        if specs:
            first = specs[0]
            for key in ("class_names", "input_size", "normalization"):
                if spec[key] != first[key]:
                    raise ConfigError(f"{run.path}: its {key} {spec[key]} differ from {runs[0].path}'s {first[key]}")
        runs.append(run)
        models.append(model)
        specs.append(spec)
    return runs, models, specs


def ensemble_runs(cfg: EnsembleConfig, progress: bool = True) -> Run:
    from ..deploy.runtime import TorchPredictor

    cfg.validate()
    runs, models, specs = _members(cfg.runs)
    weights = cfg.weights or [1.0] * len(runs)
    model = SoftVotingEnsemble(models, weights).eval()
    spec = {**specs[0], "name": ENSEMBLE, "kwargs": {"members": specs, "weights": weights}}
    data = data_for_run(runs[0], None)
    run = Run.create(Path(cfg.out), stage="ensemble", parent=None,
                     members=[str(r.path.resolve()) for r in runs], weights=weights,
                     config=training_config(runs[0]),  # the data it is evaluated on: the first member's
                     params=count_params(model), macs=count_macs(model),
                     placement={"device": str(resolve_device(cfg.device))})
    with removed_on_failure(run):
        run.save_model(model, spec)
        reports = reports_by_split(TorchPredictor(model, spec, device=resolve_device(cfg.device)), data)
        if "test" in reports:
            write_evaluation(run.path, "test", reports["test"], source=data.source)
        run.update(status="complete", metrics={
            "val_acc": reports.get("val", {}).get("accuracy"), "test_acc": reports.get("test", {}).get("accuracy"),
            "test_macro_f1": reports.get("test", {}).get("macro_f1"), "backend": "torch",
            "members": {r.name: r.manifest.get("metrics", {}).get("test_acc") for r in runs}})
    return run
