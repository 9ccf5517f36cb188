"""What a run leaves behind besides weights: metrics log (JSON lines; TensorBoard if installed),
the resolved config and plugin versions, the skip report and a PNG of the curves.

Only rank 0 writes. On ``--resume`` the metrics log is cut back to the checkpoint's step so the
resumed run appends exactly what an uninterrupted run would have written.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

from zoo.atomic import write_json, write_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per line to ``run_dir/metrics.jsonl`` (and TensorBoard scalars)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
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


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(run_dir: Path, out: Path | None = None) -> Path | None:
    """PNG of train loss and lr per step and validation metrics per epoch; None without matplotlib."""
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
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if train:
        axes[0].plot([r["global_step"] for r in train], [r["loss"] for r in train])
        axes[1].plot([r["global_step"] for r in train], [r["lr"] for r in train])
    axes[0].set(title="train loss", xlabel="optimizer step")
    axes[1].set(title="learning rate (group 0)", xlabel="optimizer step", yscale="log" if train else "linear")
    plotted = 0
    for key in ("gap", "accuracy", "train_loss"):
        pts = [(r["global_step"], r[key]) for r in val if r.get(key) is not None]
        if pts:
            axes[2].plot(*zip(*pts), marker="o", label=key)
            plotted += 1
    axes[2].set(title="per epoch", xlabel="optimizer step")
    if plotted:
        axes[2].legend()
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / "curves.png"
    from zoo.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out


def plugin_versions() -> dict[str, Any]:
    """Loaded plugins with distribution and version, plus the library versions that shape results."""
    import torch

    from zoo import __version__
    from zoo.plugins import get_registry

    report = get_registry().report
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


def save_run_info(run_dir: Path, resolved_cfg: dict[str, Any], plan: dict[str, Any], argv: list[str]) -> None:
    write_json(Path(run_dir) / "config.json", resolved_cfg)
    write_json(Path(run_dir) / "plan.json", plan)
    write_json(Path(run_dir) / "environment.json", {**plugin_versions(), "argv": argv})
