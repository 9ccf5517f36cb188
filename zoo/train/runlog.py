"""What a run leaves behind besides weights: metrics log (JSON lines; TensorBoard if installed),
the resolved config and plugin versions, the skip report and a PNG of the curves; and
:class:`MetricsLogger`, the epoch-loop callback that writes the metrics log.

Only rank 0 writes. On ``--resume`` the metrics log is cut back to the checkpoint's step so the
resumed run appends exactly what an uninterrupted run would have written.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch

from zoo.atomic import write_json, write_text
from zoo.distributed import DistContext
from zoo.registry import Registry
from zoo.train.callbacks import Callback, EpochState
from zoo.train.state import TrainState

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per line to ``run_dir/metrics.jsonl`` (and TensorBoard scalars)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.tensorboard = tensorboard
        self._tb: Any = None  # opened with the first record: creating a log touches nothing on disk

    def _open_tensorboard(self) -> None:
        self.tensorboard = False
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
        except Exception:  # tensorboard not installed: JSON lines only
            self._tb = None

    def truncate_after(self, global_step: int) -> None:
        """Drop records written after ``global_step`` (used on resume)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("global_step", 0) <= global_step]
        write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.tensorboard:
            self._open_tensorboard()
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self._tb is not None:
            step = int(record.get("global_step", 0))
            kind = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("global_step", "epoch", "stage"):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class MetricsLogger(Callback):
    """Writes a ``train`` record (mean loss over the window, lr, images/s) every ``log_every`` optimizer
    steps and at the end of an epoch, and the end-of-epoch record (train loss, validation metrics),
    which also goes into the run's history. The window's loss is reduced across ranks."""

    def __init__(self, metrics: MetricsLog, ctx: DistContext, log_every: int) -> None:
        self.metrics, self.ctx, self.log_every = metrics, ctx, max(1, int(log_every))
        self.t0, self.seen = 0.0, 0
        self.window = torch.zeros(2, dtype=torch.float64)

    def on_epoch_start(self, state: TrainState, epoch: EpochState) -> None:
        self.t0, self.seen = time.perf_counter(), 0
        # running sums stay on the device (no host sync per step): [loss * n, n] for the log window
        self.window = torch.zeros(2, dtype=torch.float64, device=self.ctx.device)

    def on_batch_end(self, state: TrainState, epoch: EpochState, loss: torch.Tensor | None, images: int) -> None:
        if loss is None:
            return
        self.seen += images
        self.window[0] += loss.double() * images
        self.window[1] += images

    def on_step_end(self, state: TrainState, epoch: EpochState) -> None:
        if state.global_step % self.log_every != 0 and not epoch.last_batch:
            return
        ips = self.seen * self.ctx.world_size / max(1e-9, time.perf_counter() - self.t0)
        tot = self.ctx.all_reduce_sum(self.window.tolist())
        record = {"kind": "train", "stage": epoch.stage.index, "epoch": epoch.epoch, "global_step": state.global_step,
                  "loss": tot[0] / max(1.0, tot[1]), "lr": epoch.lr, "img_per_s": ips, "time": time.time()}
        self.metrics.write(record)
        epoch.last_log = record
        self.window.zero_()

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        record = epoch.record
        state.history.append(record)
        self.metrics.write(record)
        if self.ctx.is_main:
            log.info("stage %s epoch %d/%d: %s", epoch.stage.name, epoch.epoch, epoch.stage.last_epoch,
                     ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float)))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


#: per-epoch keys the curves show: losses on one panel, validation metrics (0-1) on another
EPOCH_LOSSES = ("train_loss",)
EPOCH_METRICS = ("map@100", "recall@1", "mp@5", "gap", "accuracy")


def plot_curves(run_dir: Path, out: Path | None = None, selected: dict[str, Any] | None = None) -> Path | None:
    """PNG of train loss and lr per step, the train loss per epoch and the validation metrics per epoch
    (retrieval mAP@100 / R@1 / mP@5, classification GAP / accuracy), the ``selected`` epoch marked;
    None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        log.warning("matplotlib is not installed: no curves.png")
        return None
    records = read_metrics(Path(run_dir) / METRICS_FILE)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    if train:
        axes[0].plot([r["global_step"] for r in train], [r["loss"] for r in train])
        axes[1].plot([r["global_step"] for r in train], [r["lr"] for r in train])
    axes[0].set(title="train loss", xlabel="optimizer step")
    axes[1].set(title="learning rate (group 0)", xlabel="optimizer step", yscale="log" if train else "linear")
    for ax, keys, title in ((axes[2], EPOCH_LOSSES, "train loss per epoch"),
                            (axes[3], EPOCH_METRICS, "validation per epoch")):
        plotted = 0
        for key in keys:
            pts = [(r["global_step"], r[key]) for r in val
                   if isinstance(r.get(key), (int, float)) and r[key] == r[key]]  # NaN-free
            if pts:
                ax.plot(*zip(*pts), marker="o", label=key)
                plotted += 1
        if selected and selected.get("global_step") is not None and plotted:
            ax.axvline(selected["global_step"], color="grey", linestyle="--", linewidth=1,
                       label=f"selected (epoch {selected.get('epoch')})")
        ax.set(title=title, xlabel="optimizer step")
        if plotted:
            ax.legend()
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / "curves.png"
    from zoo.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out


def plugin_versions(registry: Registry) -> dict[str, Any]:
    """``registry``'s loaded plugins with distribution and version, plus the library versions that
    shape results."""
    from zoo import __version__

    report = registry.report
    versions: dict[str, Any] = {"zoo": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("timm", "albumentations", "open_clip", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            pass
    return {
        "versions": versions,
        "plugins": [p.to_dict() for p in report.loaded] if report else [],
        "failed_plugins": [{"name": f.name, "error": f.error} for f in report.failed] if report else [],
    }


def save_run_info(run_dir: Path, resolved_cfg: dict[str, Any], plan: dict[str, Any], argv: list[str],
                  registry: Registry) -> None:
    write_json(Path(run_dir) / "config.json", resolved_cfg)
    write_json(Path(run_dir) / "plan.json", plan)
    write_json(Path(run_dir) / "environment.json", {**plugin_versions(registry), "argv": argv})
