"""Build a faiss index over a ``zoo embed`` folder; the index is a folder.

The output folder holds index.faiss (the faiss index itself: ``faiss.read_index(OUT/index.faiss)``),
ids.json (the image id of every row) and index.json (how it was built); search it with `zoo search`
or `zoo retrieve --index OUT`. Shards are streamed (never all loaded at once for IVF training: a
strided sample is used).

Examples:
  zoo index emb/ --out index/                                    # exact inner product (IndexFlatIP)
  zoo index emb/ --out index-fp16/ --fp16                        # exact, float16 storage
  zoo index emb/ --out index-ivfpq/ --type ivfpq --nlist 4096 --m 64    # millions of images
"""

from __future__ import annotations

import argparse

from zoo.cli._options import add_json_arg, choice_of

COMMAND = "index"
HELP = "build a faiss index (flat, ivf, ivfpq; fp16 option) from embedding shards"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("embeddings", help="embeddings folder written by zoo embed")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output index folder (index.faiss + ids.json + index.json; not a single .faiss file)")
    p.add_argument("--type", type=choice_of("zoo.inference.index:INDEX_TYPES"), default="flat",
                   help="flat (exact), ivf or ivfpq (default: flat)")
    p.add_argument("--fp16", action="store_true", help="float16 storage (flat, ivf)")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~4 sqrt(N))")
    p.add_argument("--m", type=int, default=None, help="PQ sub-quantizers, bytes per vector (default: d/8, at most 64)")
    p.add_argument("--nbits", type=int, default=8, help="bits per PQ code (default: 8)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query (stored with the index)")
    p.add_argument("--train-size", type=int, default=262_144, help="IVF training sample size")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(func=run)


#: file names a user may give when expecting a single faiss file
FILE_SUFFIXES = (".faiss", ".index", ".idx", ".bin")


def check_out_folder(out: str) -> None:
    """The index is a folder: refuse ``--out gallery.faiss`` (or an existing file) with the fix."""
    from pathlib import Path

    from zoo.inference.index import SearchIndexError

    path = Path(out)
    if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
        folder = path.with_suffix("") if path.suffix else path.with_name(path.name + "-index")
        raise SearchIndexError(
            f"--out {out}: a zoo index is a folder (index.faiss + ids.json + index.json), not one file; "
            f"give a folder, e.g. --out {folder}/ (faiss.read_index('{folder}/index.faiss') then reads the faiss index)"
        )


def run(args: argparse.Namespace) -> int:
    from zoo.inference.index import IndexSpec, index_from_store

    check_out_folder(args.out)
    spec = IndexSpec(type=args.type, fp16=args.fp16, nlist=args.nlist, m=args.m, nbits=args.nbits,
                     nprobe=args.nprobe, train_size=args.train_size)
    bundle = index_from_store(args.embeddings, spec, progress=not args.no_progress)
    bundle.save(args.out)
    s = bundle.spec
    extra = f", nlist={s.nlist}, nprobe={s.nprobe}" if s.type != "flat" else ""
    extra += f", m={s.m}, nbits={s.nbits}" if s.type == "ivfpq" else ""
    if args.json:
        from dataclasses import asdict

        from zoo.cli._output import print_json

        print_json({"out": args.out, "vectors": bundle.index.ntotal, "dim": bundle.index.d, "spec": asdict(s)})
        return 0
    print(f"indexed {bundle.index.ntotal} vectors of dim {bundle.index.d} into {args.out} "
          f"({s.type}{', fp16' if s.fp16 else ''}{extra})")
    return 0
