"""grocery-heldout: does ``zoo train default-finetune`` make a better retrieval model on products it
never saw? Before/after mAP, R@1 and mP@5 through the user's commands.

Protocol (``../shared/data/grocery-store/README.md``), class-disjoint:

* ``--split protocol``: train on the ``train`` + ``val`` photos of the 50 produce classes and of the 16
  products in ``protocol/train_skus.txt`` (2,464 photos, 66 classes); evaluate on the ``test`` photos
  of the 15 products in ``protocol/heldout_skus.txt`` (377 photos).
* ``--split random:SEED``: the same construction with the 31 products partitioned at random into 16
  training and 15 held-out products (``random.Random(SEED).shuffle`` of the sorted product names;
  see :func:`draw_products`).
* ``--split swap:SEED``: the protocol's roles swapped: train on the 15 protocol held-out products plus
  one protocol training product drawn with ``random.Random(SEED)``, evaluate on the other 15. Its
  evaluation photos never show a protocol held-out product, so ``swap:0`` is the split the recipe's
  settings were chosen on (the protocol and ``random:1`` only confirm them).

Every evaluation photo queries all the others (its own image removed), positives are photos of the
same product; mAP over all queries (the full ranking: ``-k`` = all photos), R@1, mP@5. "Before" is
the recipe's model as ``zoo embed`` builds it from its verified offline ImageNet weights (the
recipe's backbone + pooling, no training); "after" is the trained run folder (``zoo embed RUN_DIR``: its selected weights,
``model.safetensors``). Both
are embedded, indexed and searched by the CLI, then scored by ``zoo evaluate``; the same is done on
``../shared/data/instance-eval`` (another domain: landmarks, objects, scenes).

    python benchmarks/finetune_grocery.py                     # protocol split
    python benchmarks/finetune_grocery.py --split random:1
    python benchmarks/finetune_grocery.py --split random:1 --out runs/grocery-r1 --reuse
    python benchmarks/finetune_grocery.py --split random:1 --curve   # + the trainer's per-epoch held-out
                                                                    #   retrieval validation (curve only)
Prints the exact commands, ``uptime`` before and after training, one JSON line and a markdown table row
(also appended to --row-out). Train time is the wall time of the ``zoo train`` subprocess; its CPU time is
given too (the machine is shared). ``OMP_NUM_THREADS`` set for the benchmark is passed on and recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = "default-finetune"


def find_data(name: str, env: str) -> Path:
    """``$ENV``, else the first ``shared/data/NAME`` above the repository (a checkout or a worktree)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    for parent in REPO.parents:
        if (parent / "shared" / "data" / name / "labels.csv").is_file():
            return parent / "shared" / "data" / name
    return REPO.parent / "shared" / "data" / name


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def draw_products(rows: list[dict[str, str]], split: str, root: Path) -> tuple[list[str], list[str]]:
    """(training products, held-out products) of ``split``: ``protocol`` or ``random:SEED``."""
    products = sorted({r["instance"] for r in rows if r["kind"] == "package"})
    if split == "protocol":
        read = lambda name: [s.strip() for s in (root / "protocol" / name).read_text().splitlines() if s.strip()]  # noqa: E731
        return read("train_skus.txt"), read("heldout_skus.txt")
    if split.startswith("random:"):
        order = list(products)
        random.Random(int(split.split(":", 1)[1])).shuffle(order)
        return sorted(order[:16]), sorted(order[16:])
    if split.startswith("swap:"):
        train, heldout = draw_products(rows, "protocol", root)
        keep = random.Random(int(split.split(":", 1)[1])).choice(sorted(train))
        return sorted([*heldout, keep]), sorted(p for p in train if p != keep)
    raise SystemExit(f"unknown split '{split}': use protocol, random:SEED or swap:SEED")


def split_rows(rows: list[dict[str, str]], train_products: list[str], heldout: list[str]
               ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Training rows (train + val photos of produce and training products), evaluation rows (test
    photos of the held-out products)."""
    keep = set(train_products)
    train = [r for r in rows if r["split"] in ("train", "val") and (r["kind"] == "produce" or r["instance"] in keep)]
    held = set(heldout)
    evaluation = [r for r in rows if r["split"] == "test" and r["instance"] in held]
    return train, evaluation


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "instance"])
        w.writerows([[r["path"], r["instance"]] for r in rows])
    return path


def build_split_csvs(root: Path, split: str, out: Path) -> dict[str, object]:
    """Write ``train.csv`` and ``eval.csv`` (``path,instance``) of ``split`` under ``out``."""
    rows = read_rows(root)
    train_products, heldout = draw_products(rows, split, root)
    train, evaluation = split_rows(rows, train_products, heldout)
    return {
        "train_csv": write_csv(out / "train.csv", train), "eval_csv": write_csv(out / "eval.csv", evaluation),
        "train_products": train_products, "heldout_products": heldout, "train_images": len(train),
        "train_classes": len({r["instance"] for r in train}), "eval_images": len(evaluation),
    }


def zoo_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "zoo", *[str(a) for a in args]]


def run(cmd: list[str], log: list[str]) -> str:
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if os.environ.get(k)]
    log.append(" ".join(shlex.quote(c) for c in [*env, *(["zoo", *cmd[3:]] if cmd[:3] == [sys.executable, "-m", "zoo"] else cmd)]))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {log[-1]}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def evaluate(images_csv: Path, image_root: Path, work: Path, log: list[str], model: str, model_args: list[str],
             fresh: bool = True) -> dict[str, float]:
    """``zoo embed MODEL`` (a recipe or a run folder) -> ``zoo index`` -> ``zoo search`` (all photos) ->
    ``zoo evaluate``: mAP, R@1, mP@5. ``fresh=False`` lets ``zoo embed`` keep the finished shards of an
    earlier run in the same folder (the untrained model's embeddings do not change)."""
    n = sum(1 for _ in open(images_csv)) - 1
    emb, index, nb = work / "emb", work / "index", work / "neighbours.csv"
    run(zoo_cmd("embed", model, *model_args, "--images", images_csv, "--image-root", image_root, "--out", emb,
                *(["--overwrite"] if fresh else []), "--no-progress"), log)
    run(zoo_cmd("index", emb, "--out", index), log)
    run(zoo_cmd("search", index, "--query", emb, "-k", n, "--out", nb, "--no-progress"), log)
    out = run(zoo_cmd("evaluate", nb, images_csv, "--map-k", n - 1, "--mp-k", 5, "--recall-k", 1, "--json"), log)
    res = json.loads(out.strip().splitlines()[-1])
    pick = {}
    for key, value in res["metrics"].items():
        k = key.lower()
        if k.startswith("map"):
            pick["map"] = float(value)
        elif k.startswith("mp"):
            pick["mp5"] = float(value)
        elif k.startswith("recall") or k.startswith("r@"):
            pick["r1"] = float(value)
    if set(pick) != {"map", "mp5", "r1"}:
        raise SystemExit(f"unexpected zoo evaluate output: {res}")
    return pick


def read_epoch_records(run_dir: Path) -> list[dict[str, object]]:
    """The run's per-epoch records (``metrics.jsonl`` lines without ``kind: train``): train loss and,
    with ``--curve``, the retrieval validation metrics."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") != "train"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="grocery-store folder (default: ../shared/data/grocery-store)")
    ap.add_argument("--instance-eval", type=Path, default=None, help="instance-eval folder ('' to skip)")
    ap.add_argument("--split", default="protocol", help="protocol (default) or random:SEED")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temp folder)")
    ap.add_argument("--work", type=Path, default=None, help="folder for CSVs and embeddings (default: a temp folder)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reuse", action="store_true", help="evaluate a finished run in --out instead of training")
    ap.add_argument("--row-out", type=Path, default=None, help="append the markdown table row to this file")
    ap.add_argument("--max-steps", type=int, default=None, help="smoke runs only: zoo train --max-steps")
    ap.add_argument("--curve", action="store_true",
                    help="also pass --val EVAL.csv --select last: the trainer's retrieval validation reports the "
                         "held-out mAP@100/R@1 after every epoch (the curve; its time counts in the train time) "
                         "while the evaluated weights stay the last epoch's (no selection on held-out photos)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides for zoo train (none for the benchmark)")
    args = ap.parse_args(argv)
    root = args.data or find_data("grocery-store", "ZOO_GROCERY")
    if not (root / "labels.csv").is_file():
        print(f"no labels.csv under {root}: pass --data", file=sys.stderr)
        return 2
    inst = args.instance_eval if args.instance_eval is not None else find_data("instance-eval", "ZOO_INSTANCE_EVAL")
    work = args.work or Path(tempfile.mkdtemp(prefix="zoo-grocery-"))
    out = args.out or work / "run"
    split = build_split_csvs(root, args.split, work)
    log: list[str] = []
    model_overrides = [o for o in args.overrides if o.startswith("model.") or o.startswith("data.")]
    before_args = [a for o in model_overrides for a in ("-o", o)]

    before = evaluate(split["eval_csv"], root, work / "before", log, RECIPE, before_args, fresh=False)  # type: ignore[arg-type]
    inst_before = (evaluate(inst / "labels.csv", inst, work / "inst-before", log, RECIPE, before_args, fresh=False)
                   if inst and (inst / "labels.csv").is_file() else None)

    cmd = zoo_cmd("train", RECIPE, *args.overrides, "--data", split["train_csv"], "--images", root, "--out", out,
                  "--device", args.device, "--no-progress")
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.curve:
        cmd += ["--val", str(split["eval_csv"]), "--select", "last"]
    uptime0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print("before training:", uptime0, flush=True)
    load0 = os.getloadavg()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if args.reuse and (out / "model.safetensors").is_file() and (out / "labels.json").is_file():
        log.append("(reused) " + " ".join(["zoo", *map(str, cmd[3:])]))
        train_s = cpu_s = None
    else:
        run(cmd, log)
        train_s = time.perf_counter() - t0
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    load1 = os.getloadavg()
    uptime1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print("after training:", uptime1, flush=True)
    curve = [{k: r[k] for k in r if k == "epoch" or k.startswith(("val_", "map", "recall", "mp", "train_loss"))}
             for r in read_epoch_records(out)]
    after = evaluate(split["eval_csv"], root, work / "after", log, str(out), [])  # type: ignore[arg-type]
    inst_after = (evaluate(inst / "labels.csv", inst, work / "inst-after", log, str(out), [])
                  if inst_before is not None else None)
    result = {
        "benchmark": "finetune_grocery", "split": args.split, "recipe": RECIPE, "overrides": args.overrides,
        "train_images": split["train_images"], "train_classes": split["train_classes"],
        "eval_images": split["eval_images"], "heldout_products": split["heldout_products"],
        "before": before, "after": after, "gain_map": round(after["map"] - before["map"], 4),
        "train_seconds": None if train_s is None else round(train_s, 1),
        "train_cpu_seconds": None if cpu_s is None else round(cpu_s, 1),
        "load_before_after": [round(load0[0], 2), round(load1[0], 2)], "uptime": [uptime0, uptime1],
        "curve": curve,
        "instance_eval_before": inst_before, "instance_eval_after": inst_after,
        "commands": log, "date": time.strftime("%Y-%m-%d %H:%M"), "torch_threads": os.environ.get("OMP_NUM_THREADS") or "default",
    }
    print("\n".join(log))
    print(json.dumps(result))
    f = lambda d, k: f"{d[k]:.3f}"  # noqa: E731
    row = (f"| {args.split} | {' '.join(args.overrides) or '(recipe defaults)'} | "
           f"{'-' if train_s is None else f'{train_s:.0f} s'} | {load0[0]:.1f}-{load1[0]:.1f} | "
           f"{f(before, 'map')} -> **{f(after, 'map')}** | {f(before, 'r1')} -> {f(after, 'r1')} | "
           f"{f(before, 'mp5')} -> {f(after, 'mp5')} | "
           + (f"{f(inst_before, 'map')} -> {f(inst_after, 'map')} / {f(inst_before, 'r1')} -> {f(inst_after, 'r1')} |"
              if inst_before and inst_after else "- |"))
    print(row)
    if args.row_out:
        with open(args.row_out, "a") as fh:
            fh.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
