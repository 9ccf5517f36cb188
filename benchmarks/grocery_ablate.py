"""Ablations of ``default-finetune`` on a grocery split, with the held-out retrieval curve per epoch.

Runs zoo's own trainer in-process (the ``zoo train`` recipe + overrides, the same ``FileSource`` and
``Trainer``) and, after every epoch, embeds the split's held-out photos with a copy of the model
through zoo's inference path (``zoo.inference.embed.Embedder``: the recipe's inference
preprocessing, long side ``data.image_size``) and scores the full ranking (mAP, R@1, mP@5; every
photo queries all the others). Epoch 0 is the model before training (its verified ImageNet weights,
the recipe's pooling). The evaluation is not counted in the training time.

The trainer's per-epoch hook used here (``Trainer._run_epoch``) is private: this is an experiment
helper, not an API. ``benchmarks/finetune_grocery.py`` is the user-path benchmark (CLI only).

Timing: wall seconds of the training epochs, CPU seconds of this process and of its reaped loader
workers, and the 1-minute load average, so that runs on a shared machine can be compared by CPU time
(``train_cpu_s``) and scaled to an idle machine (``benchmarks/README.md`` says how).

    python benchmarks/grocery_ablate.py --split swap:0 --name base train.image_size=224
    python benchmarks/grocery_ablate.py --split swap:0 --eval-sizes 288,384 train.epochs=3
Appends one JSON line per epoch to --log (default runs/grocery-ablate.jsonl).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_grocery import build_split_csvs, find_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def retrieval_scores(emb: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Full-ranking mAP, R@1 and mP@5 (GUIE: precision over min(#relevant, 5)) with every image as a
    query against all the others."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.asarray(labels)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # the query itself sorts last
    rel = (lab[order] == lab[:, None]).astype(np.float64)
    n_rel = rel.sum(1)
    ok = n_rel > 0
    prec = np.cumsum(rel, 1) / np.arange(1, rel.shape[1] + 1)
    ap = (prec * rel).sum(1)[ok] / n_rel[ok]
    p5 = rel[:, :5].sum(1)[ok] / np.minimum(n_rel[ok], 5)
    return {"map": float(ap.mean()), "r1": float(rel[ok, 0].mean()), "mp5": float(p5.mean())}


def embed_eval(model: torch.nn.Module, records: list, image_size: int | None = None) -> np.ndarray:
    """Descriptors of ``records`` with a copy of ``model`` (zoo's inference path, CPU, fp32)."""
    from zoo.inference.embed import Embedder, embed_records
    from zoo.inference.preprocess import model_preprocesses, with_image_size

    m = copy.deepcopy(model).cpu().eval()
    emb = Embedder(m, with_image_size(model_preprocesses(m), image_size), device="cpu", amp="off")
    _, out, skipped = embed_records(emb, records, batch_size=32, num_workers=0)
    if skipped:
        raise SystemExit(f"{len(skipped)} evaluation images unreadable")
    return out


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="swap:0", help="protocol, random:SEED or swap:SEED (default: swap:0)")
    ap.add_argument("--data", type=Path, default=None, help="grocery-store folder")
    ap.add_argument("--recipe", default="default-finetune")
    ap.add_argument("--name", default=None, help="label of this run in the log")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temp folder)")
    ap.add_argument("--log", type=Path, default=REPO / "runs" / "grocery-ablate.jsonl")
    ap.add_argument("--eval-sizes", default="", help="extra inference sizes scored after the last epoch")
    ap.add_argument("--no-before", action="store_true", help="skip the epoch-0 evaluation")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--max-per-class", type=int, default=0, help="screening: at most N training photos per class")
    ap.add_argument("overrides", nargs="*", help="recipe overrides (train.epochs=3 ...)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    root = args.data or find_data("grocery-store", "ZOO_GROCERY")
    work = Path(tempfile.mkdtemp(prefix="zoo-grocery-ablate-"))
    split = build_split_csvs(root, args.split, work)
    if args.max_per_class:
        import csv
        import random

        with open(split["train_csv"], newline="") as f:  # type: ignore[arg-type]
            rows = list(csv.DictReader(f))
        rng = random.Random(0)
        rng.shuffle(rows)
        kept: dict[str, int] = {}
        rows = [r for r in rows if kept.setdefault(r["instance"], 0) < args.max_per_class
                and not kept.__setitem__(r["instance"], kept[r["instance"]] + 1)]
        with open(split["train_csv"], "w", newline="") as f:  # type: ignore[arg-type]
            w = csv.writer(f)
            w.writerow(["path", "instance"])
            w.writerows([[r["path"], r["instance"]] for r in rows])

    from zoo.cli.train import load_recipe
    from zoo.data.images import list_images
    from zoo.plugins import get_registry
    from zoo.train.engine import Trainer
    from zoo.train.files import FileSource

    cfg = load_recipe(args.recipe, list(args.overrides))
    eval_records = list_images(split["eval_csv"], root)  # type: ignore[arg-type]
    eval_labels = [r.label for r in eval_records]
    dc = cfg.get("data") or {}
    source = FileSource({"train": (split["train_csv"], root)}, None, registry=get_registry(),  # type: ignore[dict-item]
                        mean=tuple(dc.get("mean")), std=tuple(dc.get("std")))
    out = args.out or work / "run"
    name = args.name or " ".join(args.overrides) or "recipe"
    args.log.parent.mkdir(parents=True, exist_ok=True)
    common = {"name": name, "split": args.split, "recipe": args.recipe, "overrides": list(args.overrides),
              "train_images": split["train_images"] if not args.max_per_class else None,
              "max_per_class": args.max_per_class, "date": time.strftime("%Y-%m-%d %H:%M")}

    def emit(rec: dict) -> None:
        line = json.dumps({**common, **rec})
        print(line, flush=True)
        with open(args.log, "a") as fh:
            fh.write(line + "\n")

    clock = {"wall": 0.0, "cpu": 0.0, "loads": []}

    class CurveTrainer(Trainer):
        def _run_epoch(self, stage, epoch, *a, **kw):  # type: ignore[override]
            if epoch == 1 and stage.index == 0 and not args.no_before:
                scores = retrieval_scores(embed_eval(self.model, eval_records), eval_labels)
                emit({"epoch": 0, **{k: round(v, 4) for k, v in scores.items()}})
            t0, c0 = time.perf_counter(), cpu_seconds()
            stopped = super()._run_epoch(stage, epoch, *a, **kw)
            clock["wall"] += time.perf_counter() - t0
            clock["cpu"] += cpu_seconds() - c0
            clock["loads"].append(round(os.getloadavg()[0], 1))
            scores = retrieval_scores(embed_eval(self.model, eval_records), eval_labels)
            loss = self.history[-1].get("train_loss") if self.history else None
            emit({"epoch": epoch, **{k: round(v, 4) for k, v in scores.items()}, "train_loss": loss,
                  "train_wall_s": round(clock["wall"], 1), "train_cpu_s": round(clock["cpu"], 1),
                  "loads": list(clock["loads"])})
            return stopped

    t0 = time.perf_counter()
    trainer = CurveTrainer(cfg, source, out, device="cpu", pretrained=True, progress=False, argv=sys.argv)
    trainer.fit()
    total = time.perf_counter() - t0
    for size in [int(s) for s in args.eval_sizes.split(",") if s]:
        scores = retrieval_scores(embed_eval(trainer.model, eval_records, size), eval_labels)
        emit({"epoch": "final", "eval_size": size, **{k: round(v, 4) for k, v in scores.items()}})
    emit({"epoch": "done", "fit_wall_s": round(total, 1), "train_wall_s": round(clock["wall"], 1),
          "train_cpu_s": round(clock["cpu"], 1), "run": str(out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
