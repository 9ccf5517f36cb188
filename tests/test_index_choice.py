"""Index choice under a memory budget (zoo's flat policy in front of autofaiss), the recall report of
approximate builds, and the folder `zoo index` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.inference.index import IndexBundle, IndexSpec, build_gallery_index, index_from_store
from zoo.inference.index_choice import (
    FLAT_THRESHOLD,
    IndexChoiceError,
    choose_index,
    estimated_bytes,
    parse_key,
    parse_memory,
)
from zoo.inference.recall import HeldOut, doubling, heldout_rows, recall_at_k, tune_search
from zoo.inference.shards import EmbeddingStore


def clustered(n: int, d: int, seed: int = 0, centres: int = 50, noise: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "n, d, memory, flat_max, key",
    [
        (5_000, 512, "4G", None, "Flat"),  # under the threshold
        (200_000, 512, "4G", None, "Flat"),  # fits and 200k x 512 <= 2**27
        (300_000, 512, "4G", None, "HNSW32"),  # past the exact range: autofaiss's HNSW fits 4G
        (1_000_000, 512, "2G", None, "HNSW12"),  # a thinner graph in 2G
        (1_000_000, 512, "1G", None, "OPQ256_768,IVF16384_HNSW32,PQ256x8"),  # compressed to fit
        # autofaiss lists OPQ64 first, but by its own estimate (~105 MiB) that exceeds 100M: the next fits
        (1_000_000, 512, "100M", None, "OPQ48_336,IVF16384_HNSW32,PQ48x8"),
        (50_000, 512, "100M", 20_000, "IVF1024,Flat"),  # past --flat-max; HNSW does not fit 100M, IVF-flat does
        (50_000, 512, "4G", 100_000, "Flat"),  # --flat-max raises the exact range
        (50_000, 512, "4G", 20_000, "HNSW32"),  # ... or lowers it
        (60_000, 2048, "4G", None, "Flat"),  # the exact range scales with 1/d: 65,536 vectors of 2048
        (70_000, 2048, "4G", None, "HNSW32"),
        (3_000, 16, "1G", 1_000, "HNSW15"),  # --flat-max replaces the 10,000 threshold too
    ],
)
def test_choice_by_size_and_budget(n, d, memory, flat_max, key):
    choice = choose_index(n, d, memory, flat_max=flat_max)
    assert choice.key == key
    assert choice.family == parse_key(key)["family"]
    assert choice.estimated_bytes <= parse_memory(memory)
    assert choice.estimated_bytes == estimated_bytes(key, n, d)


def test_choice_errors_and_fp16():
    with pytest.raises(IndexChoiceError, match="raise --memory"):
        choose_index(1_000_000, 512, "10M")
    with pytest.raises(IndexChoiceError, match="not a size"):
        parse_memory("four gigs")
    assert parse_memory("1.5G") == 3 * 2**29 and parse_memory("512M") == 2**29
    # float16 storage halves the flat index the budget is checked against
    with pytest.raises(IndexChoiceError, match="no index of 9,999 x 512"):
        choose_index(FLAT_THRESHOLD - 1, 512, "15M")
    assert choose_index(FLAT_THRESHOLD - 1, 512, "15M", fp16=True).key == "Flat"


def test_parse_key():
    assert parse_key("IVF4096,Flat") == {"family": "ivf", "nlist": 4096, "simple": True}
    assert parse_key("HNSW15") == {"family": "hnsw", "hnsw_m": 15, "simple": True}
    assert parse_key("OPQ64_448,IVF16384_HNSW32,PQ64x8") == {
        "family": "ivfpq", "nlist": 16384, "m": 64, "nbits": 8, "simple": False}
    with pytest.raises(IndexChoiceError, match="factory key"):
        parse_key("LSH")


def test_recall_helpers():
    rows = heldout_rows(1000, 50, seed=1)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50 and (np.diff(rows) > 0).all()
    assert len(heldout_rows(100, 50)) == 10  # at most a tenth of the gallery
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, -1]]), np.array([[3, 2, 9], [4, -1, -1]])) == pytest.approx(3 / 4)
    assert doubling(1, 12) == [1, 2, 4, 8, 12] and doubling(128, 128) == [128]


def test_heldout_truth_is_exact_top_k_without_self():
    x = clustered(500, 16, seed=2)
    held = HeldOut(heldout_rows(500, 20, seed=3), 16, k=10)
    for off in range(0, 500, 128):
        held.collect(off, x[off : off + 128])
    assert held.collected and np.array_equal(held.vectors, x[held.rows])
    for off in range(0, 500, 128):
        held.add_exact(off, x[off : off + 128])
    held.finish_exact(500)
    sims = held.vectors @ x.T
    sims[np.arange(len(held)), held.rows] = -np.inf  # own row excluded
    expect = np.argsort(-sims, axis=1)[:, :10]
    assert np.array_equal(held.truth(), expect)


def test_tune_stops_at_target_and_at_saturation():
    x = clustered(400, 8, seed=4)
    held = HeldOut(heldout_rows(400, 40), 8, k=5)
    for off in (0, 200):
        held.collect(off, x[off : off + 200])
    for off in (0, 200):
        held.add_exact(off, x[off : off + 200])
    held.finish_exact(400)
    exact = np.argsort(-(held.vectors @ x.T), axis=1)
    quality = {"v": 0}

    def search(q, k):  # a fake index whose recall grows with the parameter, up to a cap
        out = exact[:, :k].copy()
        keep = min(quality["v"], 3)  # at most 3 true neighbours + self
        out[:, keep + 1 :] = -1
        return out

    rep = tune_search(search, held, param="p", ladder=[0, 1, 2, 4, 8, 16], apply=lambda v: quality.update(v=v), target=0.5)
    assert rep.value == 4 and rep.recall == pytest.approx(0.6)  # 3 of 5: first >= 0.5 (0, 1, 2 give 0.0 .. 0.4)
    rep = tune_search(search, held, param="p", ladder=[0, 1, 2, 4, 8, 16], apply=lambda v: quality.update(v=v), target=0.9)
    assert rep.value == 4 and rep.recall == pytest.approx(0.6) and quality["v"] == 4  # 8 adds nothing: kept 4
    assert "out of this index's reach" in rep.describe() and "--type flat" in rep.describe()  # names the fix


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        (None, {"memory": "1G", "flat_max": 1000}),  # autofaiss: HNSW15 (under 10,000 vectors)
        (IndexSpec("ivf"), {}),
        (IndexSpec("ivfpq", m=8, nbits=6), {}),
        (IndexSpec("hnsw", hnsw_m=8), {}),
    ],
    ids=["auto-hnsw", "ivf", "ivfpq", "hnsw"],
)
def test_approximate_build_reports_recall(spec, kwargs):
    x = clustered(3000, 16, seed=5)
    built = build_gallery_index([x[:1100], x[1100:]], 3000, 16, spec, recall_queries=100, recall_k=10,
                                progress=False, **kwargs)
    rep = built.recall
    assert rep is not None and rep.queries == 100 and rep.k == 10
    # the report is what the index does: recompute recall@10 on the held-out rows, own row dropped
    held = heldout_rows(3000, 100)
    _, rows = built.index.search(x[held], 11)
    sims = x[held] @ x.T
    sims[np.arange(100), held] = -np.inf
    truth = np.argsort(-sims, axis=1)[:, :10]
    found = np.array([[r for r in row if r != own][:10] for row, own in zip(rows, held)])
    assert rep.recall == pytest.approx(recall_at_k(found, truth), abs=1e-9)
    if built.spec.type != "ivfpq":
        assert rep.recall >= 0.95  # tuned to the target
    assert rep.param == ("efSearch" if built.spec.type == "hnsw" else "nprobe")
    assert rep.value == (built.spec.ef_search if built.spec.type == "hnsw" else built.spec.nprobe)
    if spec is None:
        assert built.choice.key == "HNSW15" and built.spec.hnsw_m == 15


def test_training_sample_leaves_out_the_heldout_rows(monkeypatch):
    import zoo.inference.index as index_mod

    seen = {}
    real = index_mod.train_index

    def spy(index, sample, spec):
        seen["sample"] = sample.copy()
        real(index, sample, spec)

    monkeypatch.setattr(index_mod, "train_index", spy)
    x = clustered(2000, 8, seed=6)
    build_gallery_index([x], 2000, 8, IndexSpec("ivf", nlist=8, train_size=2000), recall_queries=100,
                        recall_k=5, progress=False)
    held = x[heldout_rows(2000, 100)]
    sample = seen["sample"]
    assert sample.shape[0] == 1900
    assert not (np.abs(sample[:, None, :] - held[None, :, :]).sum(-1) < 1e-7).any()


def test_flat_builds_have_no_recall_report():
    x = clustered(500, 8)
    built = build_gallery_index([x], 500, 8, None, progress=False)
    assert built.spec.type == "flat" and built.recall is None and built.choice.key == "Flat"


def write_store(path, x):
    store = EmbeddingStore.create(path, {"num_records": len(x), "num_shards": 2, "shard_size": (len(x) + 1) // 2,
                                         "dim": x.shape[1], "dtype": "float32", "recipe": "test"})
    half = (len(x) + 1) // 2
    ids = [f"g{i}" for i in range(len(x))]
    store.write_shard(0, ids[:half], x[:half])
    store.write_shard(1, ids[half:], x[half:])
    return store


def test_zoo_index_auto_writes_choice_and_recall(tmp_path, capsys):
    x = clustered(3000, 16, seed=7)
    write_store(tmp_path / "emb", x)
    out = tmp_path / "idx"
    assert main(["index", str(tmp_path / "emb"), "--out", str(out), "--memory", "64M", "--flat-max", "1000",
                 "--recall-queries", "200", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "hnsw" in text and "faiss key HNSW15" in text
    assert "chosen: autofaiss for 3,000 x 16 under --memory 64M" in text
    assert "recall@100" in text and "200 held-out gallery vectors" in text
    assert sorted(p.name for p in out.iterdir()) == ["ids.json", "index.faiss", "index.json"]
    meta = json.loads((out / "index.json").read_text())
    assert meta["spec"]["type"] == "hnsw" and meta["factory_key"] == "HNSW15"
    assert meta["choice"]["key"] == "HNSW15" and meta["choice"]["memory"] == "64M"
    assert meta["recall"]["queries"] == 200 and meta["recall"]["k"] == 100 and meta["recall"]["param"] == "efSearch"
    assert 0.9 <= meta["recall"]["recall"] <= 1.0
    back = IndexBundle.load(out)
    assert back.spec.ef_search == meta["recall"]["value"]
    import faiss

    assert faiss.downcast_index(back.index).hnsw.efSearch == back.spec.ef_search  # stored parameter restored
    assert back.ids == [f"g{i}" for i in range(3000)]

    # small gallery, default budget: exact, and said so
    assert main(["index", str(tmp_path / "emb"), "--out", str(tmp_path / "flat"), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["spec"]["type"] == "flat" and "recall" not in summary
    assert summary["choice"]["reason"].startswith("exact: 3,000 vectors, under 10,000")

    assert main(["index", str(tmp_path / "emb"), "--out", str(tmp_path / "bad"), "--memory", "lots"]) != 0
    assert "--memory lots: not a size" in capsys.readouterr().err


def test_explicit_type_keeps_given_nprobe(tmp_path):
    x = clustered(2000, 16, seed=8)
    write_store(tmp_path / "emb", x)
    bundle = index_from_store(tmp_path / "emb", IndexSpec("ivf", nlist=16, nprobe=2), recall_queries=100,
                              progress=False)
    assert bundle.spec.nprobe == 2 and bundle.meta["recall"]["value"] == 2 and bundle.meta["recall"]["ladder"] == []
