"""Recognition (Kaggle GLR, GAP): a label and a confidence per test image from a labelled train set.

Examples:
  zoo recognize default --train train/ --test test/ --out submission.csv
  zoo recognize default --train train_emb/ --test test_emb/ --out submission-emb.csv

--train and --test take image folders/CSVs (embedded into --work, resumable) or `zoo embed` folders.
The recipe's `inference.postprocess` post-processors run in order (kNN + head fusion, Henkel &
Singer re-ranking with the --non-landmark distractors, ...); a post-processor may predict
"non-landmark" (an empty landmarks cell). Without post-processors the nearest train image's label
and cosine are used. When the test images have labels, GAP is printed (registered metric `gap`).
Train, test and distractor vectors must come from one model (recipe, weights, config,
preprocessing; recorded by zoo embed): vectors of different models are refused unless
--allow-mixed-models.
Output: `id,landmarks` with "label confidence".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli._options import add_embed_args, add_json_arg, add_mixed_models_arg, add_model_args

COMMAND = "recognize"
HELP = "landmark recognition of test images against a labelled train set; Kaggle CSV (id,landmarks)"


def configure(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--train", required=True, help="labelled train images (folder tree/CSV) or a zoo embed folder")
    p.add_argument("--test", required=True, help="test images (folder/CSV) or a zoo embed folder")
    p.add_argument("--non-landmark", default=None, help="non-landmark distractor images for post-processors")
    p.add_argument("--image-root", default=None, help="folder CSV ids are found under (default: each CSV's folder)")
    p.add_argument("--train-labels", default=None, help="CSV labelling the train images (when --train has no labels)")
    p.add_argument("--test-labels", default=None, help="CSV of test labels: GAP is printed")
    p.add_argument("--out", required=True, help="submission CSV to write (id,landmarks)")
    p.add_argument("--work", default=None, help="folder for embeddings of image inputs (default: zoo-work/RECIPE)")
    p.add_argument("--no-postprocess", action="store_true", help="nearest-neighbour label, ignore inference.postprocess")
    add_embed_args(p)
    add_mixed_models_arg(p)
    add_json_arg(p, "the summary and GAP")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from zoo.cli._output import print_table
    from zoo.data.images import list_images
    from zoo.data.labels import LabelMap
    from zoo.inference.embed import Embedder, embed_records
    from zoo.cli._options import (
        check_weights_not_random,
        embed_options_from_args,
        model_from_args,
        preprocesses_from_args,
        recipe_config_from_args,
    )
    from zoo.inference.identity import ModelIdentity, check_same_model
    from zoo.inference.pipeline import (
        LazyImages,
        PipelineError,
        build_postprocessors,
        inference_config,
        model_dims_of,
        needs_head,
        needs_images,
        recognize,
    )
    from zoo.cli._sources import EmbeddedSet, input_identities, is_embeddings_folder, load_set
    from zoo.inference.submission import write_recognition_result
    from zoo.plugins import get_registry
    from zoo.postprocess import NON_LANDMARK

    reg = get_registry()
    cfg = recipe_config_from_args(args, reg)  # a recipe, a run folder or a self-describing --checkpoint
    chain = [] if args.no_postprocess else build_postprocessors(inference_config(cfg), reg, produces="recognition")
    head = needs_head(chain)
    work = Path(args.work or Path("zoo-work") / str(cfg.get("name")))
    sources = [s for s in (args.train, args.test, args.non_landmark) if s is not None]
    model, meta, pre = None, {"recipe": cfg.get("name")}, None
    if head or any(not is_embeddings_folder(s) for s in sources):
        model, meta = model_from_args(args)
        pre = preprocesses_from_args(model, args)
        if head:  # the head's class scores are used: a random head is refused too
            check_weights_not_random(model, args, head=True)
    options = embed_options_from_args(args)
    inputs = [("--train", args.train), ("--test", None if head else args.test), ("--non-landmark", args.non_landmark)]
    sides = input_identities(model, pre, options, inputs, recipe=cfg.get("name"))
    if head:  # the test images are embedded by the command's model (with its head)
        sides.insert(0, (f"recipe '{cfg.get('name')}' (embedding --test {args.test})",
                         ModelIdentity.of_model(model, pre, flip_tta=options.flip_tta)))
    check_same_model(sides, allow=args.allow_mixed_models)  # before anything is embedded
    common = dict(model=model, work=work, image_root=args.image_root, options=options, preprocesses=pre, meta=meta)
    train = load_set(args.train, name="train", labels=args.train_labels, **common)
    if not any(lab is not None for lab in train.labels):
        raise PipelineError(
            f"{args.train}: no train labels; give a CSV with a landmark_id/label column, an image-folder tree "
            "(one sub-folder per class) or --train-labels"
        )
    head_logits = None
    if head:
        if is_embeddings_folder(args.test):
            raise PipelineError("the recipe's post-processors use the head's class cosines: give --test as images")
        recs = list_images(args.test, args.image_root)
        heads: list[np.ndarray] = []
        embedder = Embedder(model, pre, device=_device(options), amp=options.amp, flip_tta=options.flip_tta)
        ids, emb, skipped = embed_records(embedder, recs, batch_size=options.batch_size,
                                          num_workers=options.num_workers, progress=options.progress,
                                          desc="embed test", heads=heads, decode=options.decode)
        by_id = {r.id: r for r in recs}
        test = EmbeddedSet(ids, emb, [by_id[i].label for i in ids], {i: by_id[i].path for i in ids}, skipped)
        head_logits = heads[0] if heads else None
    else:
        test = load_set(args.test, name="test", labels=args.test_labels, **common)
    non_landmark = None
    if args.non_landmark:
        non_landmark = load_set(args.non_landmark, name="non_landmark", **common).embeddings
    images = None
    if needs_images(chain):
        if not test.paths:
            raise PipelineError("the recipe's post-processors look at the test images: give --test as images")
        images = LazyImages([test.paths[i] for i in test.ids])
    label_map = LabelMap.from_labels(train.labels)
    result = recognize(
        test.embeddings, train.embeddings, label_map.encode(train.labels, unknown=NON_LANDMARK), chain=chain,
        model_dims=model_dims_of(model), head_logits=head_logits, non_landmark=non_landmark, images=images,
        query_ids=test.ids,
    )
    write_recognition_result(args.out, test.ids, result, label_map.names)
    n_landmark = int(result.is_landmark.sum())
    metrics = {}
    if any(lab is not None for lab in test.labels):
        truth = label_map.encode(test.labels, unknown=NON_LANDMARK)
        metrics = {name: float(reg.create("metric", name)(result.labels, result.confidences, truth))
                   for name in ("gap", "gap_landmarks_only")}
    if args.json:
        from zoo.cli._output import print_json

        print_json({"test_images": len(test.ids), "train_images": len(train.ids), "classes": len(label_map),
                    "landmark_predictions": n_landmark, "postprocess": [type(pp).__name__ for pp in chain],
                    "out": args.out, "skipped": len(test.skipped), "metrics": metrics})
        return 0
    print(f"recognised {len(test.ids)} test images against {len(train.ids)} train images "
          f"({len(label_map)} classes); {n_landmark} landmark predictions"
          f"{', post-processing: ' + ', '.join(type(pp).__name__ for pp in chain) if chain else ''} -> {args.out}")
    if test.skipped:
        print(f"skipped {len(test.skipped)} unreadable test images (no row in the CSV)")
    if metrics:
        print_table([[name, f"{value:.4f}"] for name, value in metrics.items()], ["metric", "value"])
    return 0


def _device(options: object) -> object:
    from zoo.inference.embed import resolve_device

    return resolve_device(getattr(options, "device", "auto"))
