"""Retrieval: rank the index images for every query (top 100), write the Kaggle retrieval CSV.

Examples:
  zoo retrieve default --index train/ --query test/ --out retrieval.csv
  zoo retrieve default --index index/ --query test_emb/ --out retrieval-index.csv
  zoo retrieve default --index ../shared/data/instance-eval/labels.csv --query ../shared/data/instance-eval/labels.csv --out sub.csv

--index and --query take image folders/CSVs (embedded into --work, resumable), `zoo embed` folders,
or (--index only) a `zoo index` folder (e.g. IVF-PQ for millions of images). The recipe's
`inference.postprocess` post-processors run in order (e.g. GLR2021 re-ranking with --train labels:
`zoo retrieve glr2021-1st-retrieval-ensemble ... --train train.csv`).
When query and index are the same images each query's own image is left out. When both sides
have labels (a CSV label column or an image-folder tree, or --labels), mAP@100 / R@1 / mP@5 are
printed, computed by the same registered metrics as `zoo evaluate`.
Query, index and train vectors must come from one model (recipe, weights, config, preprocessing;
recorded by zoo embed and zoo index): vectors of different models are refused unless
--allow-mixed-models.
Output: `id,images` with space-separated index ids, best first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli._options import add_embed_args, add_json_arg, add_mixed_models_arg, add_model_args

COMMAND = "retrieve"
HELP = "top-k retrieval of queries in an index set; Kaggle retrieval CSV (id,images)"


def configure(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--index", required=True, help="index images (folder/CSV), a zoo embed folder or a zoo index folder")
    p.add_argument("--query", required=True, help="query images (folder/CSV) or a zoo embed folder")
    p.add_argument("--train", default=None, help="labelled images for re-ranking post-processors (folder/CSV/embed folder)")
    p.add_argument("--image-root", default=None, help="folder CSV ids are found under (default: each CSV's folder)")
    p.add_argument("--labels", default=None, help="CSV (id/path + label column) labelling query and index images")
    p.add_argument("--out", required=True, help="submission CSV to write (id,images)")
    p.add_argument("-k", type=int, default=100, help="index images per query (default: 100)")
    p.add_argument("--work", default=None, help="folder for embeddings of image inputs (default: zoo-work/RECIPE)")
    p.add_argument("--no-postprocess", action="store_true", help="plain cosine ranking, ignore inference.postprocess")
    add_embed_args(p)
    add_mixed_models_arg(p)
    add_json_arg(p, "the summary and metrics")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.cli._output import print_table
    from zoo.data.labels import LabelMap
    from zoo.inference.identity import check_same_model
    from zoo.inference.index import IndexBundle, set_nprobe, to_gpu
    from zoo.cli._options import embed_options_from_args, preprocesses_from_args, recipe_config_from_args
    from zoo.inference.pipeline import build_postprocessors, inference_config, model_dims_of, retrieve
    from zoo.inference.retrieval import retrieval_metrics
    from zoo.cli._sources import input_identities, is_embeddings_folder, is_index_folder, load_set
    from zoo.inference.submission import write_ranking_result
    from zoo.plugins import get_registry
    from zoo.postprocess import NON_LANDMARK

    reg = get_registry()
    cfg = recipe_config_from_args(args, reg)  # a recipe, a run folder or a self-describing --checkpoint
    chain = [] if args.no_postprocess else build_postprocessors(inference_config(cfg), reg, produces="ranking")
    work = Path(args.work or Path("zoo-work") / str(cfg.get("name")))
    needs_model = any(
        s is not None and not is_embeddings_folder(s) and not is_index_folder(s)
        for s in (args.index, args.query, args.train)
    )
    model, meta, pre = None, {"recipe": cfg.get("name")}, None
    if needs_model:
        from zoo.cli._options import model_from_args

        model, meta = model_from_args(args)
        pre = preprocesses_from_args(model, args)
    options = embed_options_from_args(args)
    common = dict(model=model, work=work, image_root=args.image_root, labels=args.labels, options=options,
                  preprocesses=pre, meta=meta)
    check_same_model(  # before anything is embedded
        input_identities(model, pre, options, [("--query", args.query), ("--index", args.index), ("--train", args.train)],
                         recipe=cfg.get("name")),
        allow=args.allow_mixed_models,
    )
    query = load_set(args.query, name="query", **common)
    bundle = None
    if is_index_folder(args.index):
        bundle = IndexBundle.load(args.index)
        bundle.index = to_gpu(bundle.index, fp16=bundle.spec.fp16)
        set_nprobe(bundle.index, bundle.spec.nprobe)
        index_ids, index_emb, index_labels = bundle.ids, None, None
    else:
        same = Path(args.index).resolve() == Path(args.query).resolve()
        gallery = query if same else load_set(args.index, name="index", **common)
        index_ids, index_emb, index_labels = gallery.ids, gallery.embeddings, gallery.labels
    exclude_self = Path(args.index).resolve() == Path(args.query).resolve()
    train = train_labels = None
    if args.train:
        tset = load_set(args.train, name="train", **common)
        label_map = LabelMap.from_labels(tset.labels, allow_empty=True)
        train, train_labels = tset.embeddings, label_map.encode(tset.labels, unknown=NON_LANDMARK)
    ranking = retrieve(
        query.embeddings, index_emb, k=args.k, index=bundle.index if bundle else None, exclude_self=exclude_self,
        query_ids=query.ids, gallery_ids=index_ids, chain=chain, model_dims=model_dims_of(model),
        train=train, train_labels=train_labels,
    )
    write_ranking_result(args.out, query.ids, ranking, index_ids)
    metrics = {}
    if index_labels is not None and query.has_labels and all(lab is not None for lab in index_labels):
        metrics = retrieval_metrics(query.ids, query.labels, index_ids, index_labels, ranking.indices,
                                    exclude_self=exclude_self, registry=reg)
    if args.json:
        from zoo.cli._output import print_json

        print_json({"queries": len(query.ids), "index_images": len(index_ids), "k": args.k,
                    "exclude_self": exclude_self, "postprocess": [type(pp).__name__ for pp in chain],
                    "out": args.out, "skipped": len(query.skipped), "metrics": metrics})
        return 0
    print(f"retrieved top {args.k} of {len(index_ids)} index images for {len(query.ids)} queries"
          f"{' (each query itself left out)' if exclude_self else ''}"
          f"{', post-processing: ' + ', '.join(type(pp).__name__ for pp in chain) if chain else ''} -> {args.out}")
    if query.skipped:
        print(f"skipped {len(query.skipped)} unreadable query images (no row in the CSV)")
    if metrics:
        print_table([[k, f"{v:.4f}"] for k, v in metrics.items()], ["metric", "value"])
    else:
        print("(no metrics: query and index images need labels - a CSV label column, an image-folder tree "
              "or --labels CSV)")
    return 0
