"""Build a faiss index over a ``zoo embed`` folder; the index is a folder.

The output folder holds index.faiss (the faiss index itself: ``faiss.read_index(OUT/index.faiss)``),
ids.json (the image id of every row) and index.json (how it was built); search it with `zoo search`
or `zoo retrieve --index OUT`. Shards are streamed (never all loaded at once for IVF training: a
strided sample is used).

--type auto (the default) picks the index from the gallery size and --memory, like autofaiss: exact
(flat) under 10,000 vectors and while the flat index fits --memory and exact search stays fast
(up to 2**27 / dim vectors, e.g. 262,144 of dimension 512; --flat-max), else autofaiss's choice (HNSW,
IVF-flat, or OPQ + IVF + PQ compressed to the budget). For an approximate index, 1,000 gallery
vectors are held out of training, nprobe / efSearch are set to the smallest value reaching
--recall-target recall@100 against exact search, and that recall is printed and kept in index.json.

Examples:
  zoo index emb/ --out index/                                    # chosen for the gallery under 4G
  zoo index emb/ --out index/ --memory 1G                        # millions of images in 1 GiB
  zoo index emb/ --out index-fp16/ --type flat --fp16            # exact, float16 storage
  zoo index emb/ --out index-ivfpq/ --type ivfpq --nlist 4096 --m 64
"""

from __future__ import annotations

import argparse

from zoo.cli._options import add_json_arg, choice_of

COMMAND = "index"
HELP = "build a faiss index (auto under --memory, flat, ivf, ivfpq, hnsw) from embedding shards"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("embeddings", help="embeddings folder written by zoo embed")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output index folder (index.faiss + ids.json + index.json; not a single .faiss file)")
    p.add_argument("--type", type=choice_of("zoo.inference.index:INDEX_CHOICES"), default="auto",
                   help="auto (chosen from the gallery size and --memory), flat (exact), ivf, ivfpq or hnsw "
                        "(default: auto)")
    p.add_argument("--memory", default="4G", metavar="SIZE",
                   help="--type auto: memory the index may take, e.g. 4G, 512M (default: 4G)")
    p.add_argument("--flat-max", type=int, default=None, metavar="N",
                   help="--type auto: stay exact up to N vectors when the flat index fits --memory "
                        "(default: 2**27 / dim, e.g. 262144 for 512-d)")
    p.add_argument("--fp16", action="store_true", help="float16 storage (flat, ivf, hnsw)")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~4 sqrt(N))")
    p.add_argument("--m", type=int, default=None, help="PQ sub-quantizers, bytes per vector (default: d/8, at most 64)")
    p.add_argument("--nbits", type=int, default=8, help="bits per PQ code (default: 8)")
    p.add_argument("--hnsw-m", type=int, default=None, help="HNSW links per vector (default: 32)")
    p.add_argument("--nprobe", type=int, default=None,
                   help="IVF lists visited per query (stored with the index; default: tuned to --recall-target)")
    p.add_argument("--ef-search", type=int, default=None,
                   help="HNSW candidates per query (stored with the index; default: tuned to --recall-target)")
    p.add_argument("--recall-target", type=float, default=0.95,
                   help="approximate indexes: smallest nprobe/efSearch reaching this recall@100 on held-out "
                        "gallery vectors (default: 0.95; 0 keeps the defaults)")
    p.add_argument("--recall-queries", type=int, default=1000,
                   help="held-out gallery vectors for the recall report (default: 1000; 0: no report)")
    p.add_argument("--train-size", type=int, default=None,
                   help="IVF training sample size (default: autofaiss's, up to 100 vectors a list)")
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
    from zoo.inference.index_choice import parse_memory

    check_out_folder(args.out)
    parse_memory(args.memory)  # a bad size fails before any shard is read
    spec = None
    if args.type != "auto":
        spec = IndexSpec(type=args.type, fp16=args.fp16, nlist=args.nlist, m=args.m, nbits=args.nbits,
                         nprobe=args.nprobe, train_size=args.train_size, hnsw_m=args.hnsw_m, ef_search=args.ef_search)
    bundle = index_from_store(args.embeddings, spec, memory=args.memory, flat_max=args.flat_max, fp16=args.fp16,
                              recall_queries=args.recall_queries, recall_target=args.recall_target,
                              progress=not args.no_progress)
    bundle.save(args.out)
    s = bundle.spec
    build = bundle.build
    if args.json:
        from dataclasses import asdict

        from zoo.cli._output import print_json

        print_json({"out": args.out, "vectors": bundle.index.ntotal, "dim": bundle.index.d, "spec": asdict(s),
                    **{k: bundle.meta[k] for k in ("factory_key", "choice", "recall", "build_seconds") if k in bundle.meta}})
        return 0
    extra = f", nlist={s.nlist}, nprobe={s.nprobe}" if s.type in ("ivf", "ivfpq") else ""
    extra += f", m={s.m}, nbits={s.nbits}" if s.type == "ivfpq" else ""
    extra += f", M={s.hnsw_m}, efSearch={s.ef_search}" if s.type == "hnsw" else ""
    print(f"indexed {bundle.index.ntotal} vectors of dim {bundle.index.d} into {args.out} "
          f"({s.type}{', fp16' if s.fp16 else ''}{extra}; faiss key {s.factory_key})")
    if build is not None and build.choice is not None:
        from zoo.inference.index_choice import format_bytes

        print(f"chosen: {build.choice.reason}; index ~{format_bytes(build.choice.estimated_bytes)} (autofaiss estimate)")
    if build is not None and build.recall is not None:
        print(build.recall.describe())
    return 0
