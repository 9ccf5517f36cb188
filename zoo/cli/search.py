"""Search a faiss index with query embeddings; write the top-k neighbours as CSV.

Examples:
  zoo search index/ --query emb/                  # every image of emb/ against the index -> neighbours.csv
  zoo search index/ --query test_emb/ -k 10 --out test-neighbours.csv

Output columns: ``id`` (query), ``images`` (space-separated neighbour ids, best first), ``scores``
(space-separated inner products). Queries are searched in chunks; with faiss-gpu and CUDA the
index is cloned onto every GPU (sharded) unless --cpu is given. Query shards are read one at a
time, so memory does not grow with the number of queries. The query embeddings must come from the
model the index was built from (recipe, weights, config, preprocessing; recorded by zoo embed):
other vectors are refused unless --allow-mixed-models.
"""

from __future__ import annotations

import argparse

from zoo.cli._options import add_mixed_models_arg

COMMAND = "search"
HELP = "top-k search of query embeddings in a faiss index (CSV out)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="index folder written by zoo index")
    p.add_argument("--query", required=True, help="query embeddings folder written by zoo embed")
    p.add_argument("-k", type=int, default=100, help="neighbours per query (default: 100)")
    p.add_argument("--out", default="neighbours.csv", help="output CSV (id,images,scores; default: neighbours.csv)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists visited (default: as stored)")
    p.add_argument("--chunk", type=int, default=16384, help="queries per search call (default: 16384)")
    p.add_argument("--cpu", action="store_true", help="search on the CPU even when faiss-gpu and CUDA exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of text")
    add_mixed_models_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.inference.index import IndexBundle, set_nprobe, to_gpu
    from zoo.inference.results import write_neighbours_csv
    from tqdm.auto import tqdm

    from zoo.inference.shards import EmbeddingStore

    from zoo.inference.identity import ModelIdentity, check_same_model

    bundle = IndexBundle.load(args.index)
    store = EmbeddingStore(args.query)
    store.check_complete()
    check_same_model([(f"index {args.index}", ModelIdentity.from_manifest(bundle.meta)),
                      (f"query {args.query}", store.identity)], allow=args.allow_mixed_models)
    if not args.cpu:
        bundle.index = to_gpu(bundle.index, fp16=bundle.spec.fp16)
    set_nprobe(bundle.index, args.nprobe)

    def batches():  # one query shard at a time: memory stays flat for millions of queries
        for k in tqdm(range(store.num_shards), desc="search", unit="shard", disable=args.no_progress):
            qids, queries = store.read_shard(k)
            scores, rows = bundle.search(queries, args.k, chunk=args.chunk)
            yield qids, scores, rows

    n = write_neighbours_csv(args.out, batches(), bundle.ids)
    if args.json:
        from zoo.cli._output import print_json

        print_json({"queries": n, "vectors": bundle.index.ntotal, "k": args.k, "out": args.out})
        return 0
    print(f"searched {n} queries in {bundle.index.ntotal} vectors (top {args.k}) -> {args.out}")
    return 0
