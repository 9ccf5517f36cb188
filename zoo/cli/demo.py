"""Embed real photos with a recipe, search them, print metrics and write an HTML results page.

Examples:
  zoo demo                                   # default recipe (real ImageNet weights), default photos
  zoo demo --images photos/ --out demo/      # any image folder or CSV (labels -> metrics)
  zoo demo --recipe default model.backbone.name=mobilenetv2_100

Default photos: ../shared/data/instance-eval (next to the current folder or the repository), whose
labels.csv gives the instance of every photo; without it, the photos bundled with zoo (4 photos of
each of 31 retail products from the MIT-licensed grocery-store data set; --images bundled picks
them). Each photo queries all the others and the demo reports retrieval mAP@100, mAP (full
ranking), R@1 and mP@5, and says which photos it used.
Writes OUT/index.html (each query with its top-k thumbnails, scores and correct/incorrect marks),
OUT/thumbs/ (small JPEGs, never the full-size images) and OUT/embeddings/ (reused by a second run).
"""

from __future__ import annotations

import argparse

from zoo.cli._options import add_embed_args, add_json_arg, add_override_args, add_random_weights_args

COMMAND = "demo"
HELP = "embed + search real photos with a recipe; metrics table and an HTML page of results"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="default", help="recipe or ensemble (default: default, real ImageNet weights)")
    p.add_argument("--images", default=None,
                   help="image folder, CSV, or a folder with labels.csv (default: ../shared/data/instance-eval, "
                        "else the photos bundled with zoo; 'bundled' picks those)")
    p.add_argument("--out", default="zoo-demo", help="output folder (default: ./zoo-demo)")
    p.add_argument("-k", type=int, default=5, help="neighbours shown per query (default: 5)")
    p.add_argument("--checkpoint", default=None, help="zoo .safetensors checkpoint (else the recipe's default weights)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="load the recipe's default weights (default: yes unless --checkpoint is given)")
    add_random_weights_args(p)
    add_override_args(p)
    p.add_argument("--table-rows", type=int, default=10, help="queries printed in the search table (default: 10)")
    p.add_argument("--max-html-queries", type=int, default=500, help="queries on the HTML page (default: 500)")
    add_embed_args(p, image_size=False)
    add_json_arg(p, "the summary and metrics")
    p.set_defaults(func=run)


def _short(image_id: str) -> str:
    """The file name of an id (``images/ukbench/x.jpg`` -> ``x.jpg``) for a narrow table."""
    return image_id.rsplit("/", 1)[-1]


def run(args: argparse.Namespace) -> int:
    from zoo.cli._output import print_table
    from zoo.inference.demo import demo_records, run_demo
    from zoo.cli._options import embed_options_from_args, model_from_args

    source, records = demo_records(args.images)
    model, meta = model_from_args(args)
    if args.json:
        from zoo.cli._output import print_json

        result = run_demo(model, records, args.out, source=source, k=args.k, options=embed_options_from_args(args),
                          meta=meta, max_html_queries=args.max_html_queries)
        print_json({"recipe": args.recipe, "pretrained": meta["pretrained"], "source": source, "images": len(records),
                    "metrics": result.metrics, "page": result.page,
                    "skipped": [{"id": s.id, "error": s.error} for s in result.skipped]})
        return 0
    print(f"zoo demo: recipe '{args.recipe}'{' (pretrained)' if meta['pretrained'] else ''}, "
          f"{len(records)} images from {source}")
    result = run_demo(model, records, args.out, source=source, k=args.k,
                      options=embed_options_from_args(args), meta=meta, max_html_queries=args.max_html_queries)
    rows = []
    for q in range(min(args.table_rows, len(result.ids))):
        cells = [_short(result.ids[q])]
        for r, s in zip(result.rows[q, :3], result.scores[q, :3]):
            if r < 0:
                continue
            mark = ""
            if result.metrics:
                mark = " +" if result.labels[r] == result.labels[q] else " -"
            cells.append(f"{_short(result.ids[r])} {s:.3f}{mark}")
        rows.append(cells + [""] * (4 - len(cells)))
    print()
    print_table(rows, ["query", "#1", "#2", "#3"])
    if len(result.ids) > args.table_rows:
        print(f"... {len(result.ids) - args.table_rows} more queries on the HTML page")
    if result.metrics:
        print()
        print_table([[k, f"{v:.4f}"] for k, v in result.metrics.items()], ["metric", "value"])
        print("(+ / -: same / other instance as the query; mAP = full ranking, the others over the top 100)")
    else:
        print("\n(no two images share a label: no retrieval metrics, search table only)")
    if result.skipped:
        print(f"\nskipped {len(result.skipped)} unreadable images:")
        for s in result.skipped:
            print(f"  {s.id}: {s.error}")
    print(f"\nwrote {result.page}")
    return 0
