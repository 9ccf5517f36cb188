"""faiss indexes: write/read round trips (flat, fp16, ivf, ivfpq), chunked search, zoo index/search CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main
from zoo.inference.index import IndexBundle, IndexSpec, SearchIndexError, build_index, index_from_store, search
from zoo.inference.search import drop_self, own_rows
from zoo.inference.shards import EmbeddingStore

D = 32


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_store(path: Path, x: np.ndarray, shard: int, prefix: str = "g") -> EmbeddingStore:
    n = x.shape[0]
    store = EmbeddingStore.create(path, {"num_records": n, "num_shards": (n + shard - 1) // shard,
                                         "shard_size": shard, "dim": D, "dtype": "float32", "recipe": "test"})
    for k in range(store.num_shards):
        sl = slice(k * shard, (k + 1) * shard)
        store.write_shard(k, [f"{prefix}{i}" for i in range(n)][sl], x[sl])
    return store


@pytest.mark.parametrize(
    "spec, exact",
    [
        (IndexSpec("flat"), True),
        (IndexSpec("flat", fp16=True), True),
        (IndexSpec("ivf", nlist=8, nprobe=8), True),  # nprobe == nlist: exhaustive
        (IndexSpec("ivf", fp16=True, nlist=8, nprobe=8), True),
        (IndexSpec("ivfpq", nlist=4, m=8, nbits=6, nprobe=4), False),
    ],
    ids=["flat", "flat-fp16", "ivf", "ivf-fp16", "ivfpq"],
)
def test_round_trip(tmp_path, spec, exact):
    x = unit(600, 0)
    q = unit(40, 1)
    index, resolved = build_index([x[:250], x[250:]], spec, 600, D, progress=False)
    bundle = IndexBundle(index, [f"g{i}" for i in range(600)], resolved, {"recipe": "test"})
    bundle.save(tmp_path / "idx")
    back = IndexBundle.load(tmp_path / "idx")
    assert back.ids == bundle.ids and back.spec == resolved and back.meta["recipe"] == "test"
    assert back.index.ntotal == 600 and type(back.index) is type(index)
    s1, r1 = bundle.search(q, 10)
    s2, r2 = back.search(q, 10, chunk=7)  # chunked queries give the same answer
    assert np.array_equal(r1, r2) and np.allclose(s1, s2)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    if exact:
        tol = 2e-3 if resolved.fp16 else 1e-5
        assert np.allclose(s2, -np.sort(-(q @ x.T), axis=1)[:, :10], atol=tol)
        assert (r2[:, 0] == truth[:, 0]).mean() >= 0.95
    else:
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r2, truth)])
        assert recall > 0.3  # PQ is approximate, but far better than chance (10/600)


def test_fp16_index_is_smaller(tmp_path):
    x = unit(2000, 2)
    sizes = {}
    for fp16 in (False, True):
        index, spec = build_index([x], IndexSpec("flat", fp16=fp16), 2000, D, progress=False)
        IndexBundle(index, [str(i) for i in range(2000)], spec).save(tmp_path / str(fp16))
        sizes[fp16] = (tmp_path / str(fp16) / "index.faiss").stat().st_size
    assert sizes[True] < 0.6 * sizes[False]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(SearchIndexError, match="--type flat --fp16"):
        IndexSpec("ivfpq", fp16=True)
    with pytest.raises(SearchIndexError, match="unknown index type"):
        IndexSpec("hnsw")
    with pytest.raises(SearchIndexError, match="training vectors"):
        build_index([unit(20, 0)], IndexSpec("ivf", nlist=64), 20, D, progress=False)
    with pytest.raises(SearchIndexError, match="zoo index"):
        IndexBundle.load(tmp_path)


def test_k_larger_than_gallery_pads():
    x = unit(3, 0)
    index, _ = build_index([x], IndexSpec(), 3, D, progress=False)
    s, r = search(index, x, 5)
    assert r.shape == (3, 5) and (r[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()
    s2, r2 = drop_self(s, r, own_rows(["a", "b", "c"], ["a", "b", "c"]), 2)
    assert (r2 != np.arange(3)[:, None]).all() and (r2 >= 0).all()


def test_index_from_sharded_store_and_cli(tmp_path, capsys):
    g = unit(300, 3)
    q = unit(25, 4)
    write_store(tmp_path / "gallery", g, shard=64)
    write_store(tmp_path / "queries", q, shard=10, prefix="q")
    bundle = index_from_store(tmp_path / "gallery", IndexSpec(), progress=False)
    assert bundle.ids == [f"g{i}" for i in range(300)] and bundle.meta["recipe"] == "test"

    assert main(["index", str(tmp_path / "gallery"), "--out", str(tmp_path / "idx"), "--fp16", "--no-progress"]) == 0
    assert "indexed 300 vectors" in capsys.readouterr().out
    out_csv = tmp_path / "res.csv"
    assert main(["search", str(tmp_path / "idx"), "--query", str(tmp_path / "queries"), "-k", "5",
                 "--out", str(out_csv), "--chunk", "8"]) == 0
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(25)]
    truth = np.argsort(-(q @ g.T), axis=1)[:, :5]
    for r, t in zip(rows, truth):
        got = r["images"].split()
        assert len(got) == 5 and got[0] == f"g{t[0]}"
        scores = [float(s) for s in r["scores"].split()]
        assert scores == sorted(scores, reverse=True)


def test_incomplete_store_refuses_to_index(tmp_path):
    store = write_store(tmp_path / "g", unit(30, 0), shard=10)
    store.shard_files(1)[1].unlink()
    with pytest.raises(Exception, match="Run the same `zoo embed` command again"):
        index_from_store(tmp_path / "g", IndexSpec(), progress=False)
