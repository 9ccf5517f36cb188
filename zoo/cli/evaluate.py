"""Score a predictions CSV against a ground-truth CSV with the registered metrics.

Recognition (``id,landmarks`` = "label score"): GAP with and without non-landmark queries.
Retrieval (``id,images``): mAP@k (default 100, GLR retrieval), mP@k (default 5, GUIE), recall@k.
The ground truth may also be an instance-eval ``labels.csv`` (``path,instance,...``): all-vs-all
retrieval where each image (id = path) is a query and the other images of its instance are relevant
(the query's own id is removed from its ranking), or recognition truth (label = instance).

Examples:
  zoo evaluate submission.csv solution.csv
  zoo evaluate neighbours.csv ../shared/data/instance-eval/labels.csv --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMAND = "evaluate"
HELP = "score predictions (GAP / mAP@k / mP@k / recall@k) against ground truth"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", help="predictions CSV: id,landmarks (recognition) or id,images (retrieval)")
    p.add_argument("truth", help="ground-truth CSV: id,landmarks / id,images / labels.csv (path,instance,...)")
    p.add_argument("--task", choices=("auto", "recognition", "retrieval"), default="auto",
                   help="what to score (default: from the predictions header)")
    p.add_argument("--map-k", type=int, default=100, help="k of mAP@k (default: 100, GLR retrieval)")
    p.add_argument("--mp-k", type=int, default=5, help="k of mP@k (default: 5, GUIE)")
    p.add_argument("--recall-k", type=_int_list, default=[1, 5, 10], help="ks of recall@k, comma-separated (default: 1,5,10)")
    p.add_argument("--usage", default=None, help="score only truth rows whose Usage column equals this (Public/Private)")
    p.add_argument("--keep-self", action="store_true",
                   help="with labels.csv truth: keep each query's own id in its ranking (default: drop it)")
    p.add_argument("--include-empty", action="store_true",
                   help="retrieval: count queries without relevant ids as 0 (default: leave them out)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def evaluate(
    predictions: str,
    truth: str,
    *,
    task: str = "auto",
    map_k: int = 100,
    mp_k: int = 5,
    recall_k: tuple[int, ...] | list[int] = (1, 5, 10),
    usage: str | None = None,
    keep_self: bool = False,
    include_empty: bool = False,
    registry: Any = None,
) -> dict[str, Any]:
    """Score ``predictions`` against ``truth``; returns ``{"task", "metrics", "counts"}``."""
    from zoo.inference import submission as sub
    from zoo.plugins import get_registry

    reg = registry or get_registry()
    pred_kind = sub.detect_kind(predictions)
    truth_kind = sub.detect_kind(truth)
    if task == "auto":
        task = "recognition" if pred_kind == "recognition" else "retrieval"
    if pred_kind == "instances":
        raise sub.SubmissionError(f"{predictions} is a labels file; give it as the TRUTH (second) argument")
    if (task == "recognition") != (pred_kind == "recognition"):
        raise sub.SubmissionError(
            f"--task {task} but {predictions} is a {pred_kind} file (header id,"
            f"{'landmarks' if pred_kind == 'recognition' else 'images'})"
        )
    metrics: dict[str, float] = {}
    if task == "recognition":
        if truth_kind == "retrieval":
            raise sub.SubmissionError(f"{truth} is retrieval truth (id,images); recognition needs id,landmarks or labels.csv")
        al = sub.align_recognition(sub.read_recognition_predictions(predictions), sub.read_recognition_truth(truth, usage))
        metrics["gap"] = reg.create("metric", "gap")(al.pred, al.conf, al.truth)
        metrics["gap_landmarks_only"] = reg.create("metric", "gap_landmarks_only")(al.pred, al.conf, al.truth)
        has_target = (al.truth >= 0).any(axis=1)
        counts = {
            "queries": int(al.truth.shape[0]),
            "landmark_queries": int(has_target.sum()),
            "predictions": int((al.pred >= 0).sum()),
            "correct": int(((al.truth == al.pred[:, None]) & (al.pred[:, None] >= 0)).any(axis=1).sum()),
            "missing_rows": al.missing,
            "extra_rows": al.extra,
        }
    else:
        if truth_kind == "recognition":
            raise sub.SubmissionError(f"{truth} is recognition truth (id,landmarks); retrieval needs id,images or labels.csv")
        if truth_kind == "instances":
            truth_map = sub.instance_retrieval_truth(*sub.read_instance_labels(truth))
            drop_self = not keep_self
        else:
            truth_map = sub.read_retrieval(truth, usage)
            drop_self = False
        al = sub.align_retrieval(sub.read_retrieval(predictions), truth_map, drop_self=drop_self)
        skip = not include_empty
        metrics[f"map@{map_k}"] = reg.create("metric", "map_at_k", k=map_k, skip_empty=skip)(al.ranked, al.relevant)
        metrics[f"mp@{mp_k}"] = reg.create("metric", "mp_at_k", k=mp_k, skip_empty=skip)(al.ranked, al.relevant)
        for k in recall_k:
            metrics[f"recall@{k}"] = reg.create("metric", "recall_at_k", k=k, skip_empty=skip)(al.ranked, al.relevant)
        n_rel = (al.relevant >= 0).sum(1)
        counts = {
            "queries": int(al.ranked.shape[0]),
            "scored_queries": int(al.ranked.shape[0] if include_empty else (n_rel > 0).sum()),
            "mean_ranking_length": float((al.ranked >= 0).sum(1).mean()) if al.ranked.size else 0.0,
            "missing_rows": al.missing,
            "extra_rows": al.extra,
        }
    return {"task": task, "predictions": str(predictions), "truth": str(truth), "metrics": metrics, "counts": counts}


def format_table(result: dict[str, Any]) -> str:
    rows = [(k, f"{v:.4f}") for k, v in result["metrics"].items()]
    rows += [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in result["counts"].items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"{result['task']}: {result['predictions']} vs {result['truth']}", f"{'metric':<{width}}  value"]
    lines.append("-" * (width + 2 + max(len(v) for _, v in rows)))
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = evaluate(
        args.predictions, args.truth, task=args.task, map_k=args.map_k, mp_k=args.mp_k, recall_k=args.recall_k,
        usage=args.usage, keep_self=args.keep_self, include_empty=args.include_empty,
    )
    print(json.dumps(result) if args.json else format_table(result))
    return 0
