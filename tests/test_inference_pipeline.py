"""`zoo recognize` / `zoo retrieve`: submission CSVs, labels, metrics, post-processing chains."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.inference.index import IndexSpec, build_index
from zoo.data.labels import LabelMap
from zoo.inference.pipeline import recognize, retrieve
from zoo.inference.retrieval import relevant_rows, retrieval_metrics
from zoo.inference.shards import EmbeddingStore
from zoo.postprocess import NON_LANDMARK

D = 16


def clustered(n_classes: int, per_class: int, seed: int, noise: float = 0.05) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((n_classes, D)).astype(np.float32)
    x = np.repeat(centres, per_class, 0) + noise * rng.standard_normal((n_classes * per_class, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, [str(c) for c in np.repeat(np.arange(n_classes), per_class)]


def write_set(folder: Path, prefix: str, x: np.ndarray, labels: list[str] | None) -> tuple[Path, Path | None]:
    ids = [f"{prefix}{i:03d}" for i in range(len(x))]
    store = EmbeddingStore.create(folder, {"num_records": len(x), "num_shards": 1, "shard_size": len(x),
                                           "dim": D, "dtype": "float32", "recipe": "default"})
    store.write_shard(0, ids, x)
    if labels is None:
        return folder, None
    lab_csv = folder.parent / f"{prefix}_labels.csv"
    with open(lab_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "landmark_id"])
        w.writerows(zip(ids, labels))
    return folder, lab_csv


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_label_map_round_trip_for_inference():
    codec = LabelMap.from_labels(["10", "9", None, "b", "a", "10", ""])
    assert codec.names == ["9", "10", "a", "b"]
    enc = codec.encode(["a", None, "10", "zzz", ""], unknown=NON_LANDMARK)
    assert enc.tolist() == [2, NON_LANDMARK, 1, NON_LANDMARK, NON_LANDMARK]
    assert [codec.decode(int(v)) for v in enc] == ["a", None, "10", None, None]
    assert codec.decode(4) is None and LabelMap.from_labels([None], allow_empty=True).names == []


def test_recognize_and_retrieve_functions():
    train, tl = clustered(5, 4, 0)
    test, truth = clustered(5, 2, 1)
    codec = LabelMap.from_labels(tl)
    rec = recognize(test, train, codec.encode(tl, unknown=NON_LANDMARK))
    assert [codec.decode(int(v)) for v in rec.labels] == truth
    assert (rec.confidences > 0.9).all()
    rank = retrieve(test, train, k=4)
    assert rank.indices.shape == (10, 4)
    assert all(set(np.array(tl)[rank.indices[q]]) == {truth[q]} for q in range(10))
    # a prebuilt IVF index gives the same top-1 as exact search here
    index, _ = build_index([train], IndexSpec("ivf", nlist=4, nprobe=4), 20, D, progress=False)
    rank2 = retrieve(test, None, k=4, index=index)
    assert np.array_equal(rank2.indices[:, 0], rank.indices[:, 0])


def test_retrieval_metrics_match_hand_computed(registry):
    ids = ["a", "b", "c", "d"]
    labels = ["x", "x", "y", "y"]
    assert relevant_rows(ids, labels, ids, labels, exclude_self=True) == [[1], [0], [3], [2]]
    # a, c rank their positive first; b ranks it second; d ranks it last (third)
    rows = np.array([[1, 2, 3], [2, 0, 3], [3, 0, 1], [0, 1, 2]])
    m = retrieval_metrics(ids, labels, ids, labels, rows, exclude_self=True, registry=registry)
    assert m["mAP@100"] == pytest.approx((1 + 0.5 + 1 + 1 / 3) / 4)
    assert m["mAP"] == m["mAP@100"]  # rows cover the whole gallery minus self
    assert m["R@1"] == pytest.approx(0.5)
    assert m["mP@5"] == pytest.approx(0.5)  # min(1 positive, 5) = 1 position checked


def test_recognize_cli_writes_kaggle_csv_and_gap(tmp_path, capsys):
    train, tl = clustered(6, 3, 0)
    test, truth = clustered(6, 2, 1)
    tr, tr_labels = write_set(tmp_path / "train", "t", train, tl)
    te, te_labels = write_set(tmp_path / "test", "q", test, truth)
    out = tmp_path / "sub.csv"
    assert main(["recognize", "default", "--train", str(tr), "--train-labels", str(tr_labels), "--test", str(te),
                 "--test-labels", str(te_labels), "--out", str(out), "--no-postprocess"]) == 0
    rows = read_csv(out)
    assert [r["id"] for r in rows] == [f"q{i:03d}" for i in range(12)]
    for r, t in zip(rows, truth):
        label, conf = r["landmarks"].split(" ")
        assert label == t and 0.9 < float(conf) <= 1.0
    text = capsys.readouterr().out
    assert "gap" in text and "1.0000" in text


def test_retrieve_cli_with_embeddings_and_index_folder(tmp_path, capsys):
    gallery, gl = clustered(8, 3, 0)
    queries, ql = clustered(8, 1, 2)
    g, g_labels = write_set(tmp_path / "gallery", "g", gallery, gl)
    q, q_labels = write_set(tmp_path / "query", "q", queries, ql)
    labels = tmp_path / "all_labels.csv"
    labels.write_text(g_labels.read_text() + "".join(q_labels.read_text().splitlines(True)[1:]))
    out = tmp_path / "sub.csv"
    assert main(["retrieve", "default", "--index", str(g), "--query", str(q), "--labels", str(labels),
                 "-k", "5", "--out", str(out), "--no-postprocess"]) == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "images"] and len(rows) == 8
    first = [r["images"].split() for r in rows]
    assert all(len(x) == 5 for x in first)
    gl_by_id = dict(zip([f"g{i:03d}" for i in range(24)], gl))
    assert all([gl_by_id[i] for i in x[:3]] == [ql[n]] * 3 for n, x in enumerate(first))
    text = capsys.readouterr().out
    assert "mAP@100" in text and "1.0000" in text
    # the same through a zoo index folder
    assert main(["index", str(g), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    out2 = tmp_path / "sub2.csv"
    assert main(["retrieve", "default", "--index", str(tmp_path / "idx"), "--query", str(q), "-k", "5",
                 "--out", str(out2), "--no-postprocess"]) == 0
    assert [r["images"].split()[:3] for r in read_csv(out2)] == [x[:3] for x in first]


@pytest.mark.realdata
@pytest.mark.slow
def test_demo_and_retrieve_report_the_same_map(tmp_path, instance_eval, capsys):
    """instance-eval: `zoo demo` and `zoo retrieve` (query = index = every image) give the same mAP@100."""
    import zoo
    from zoo import atomic

    torch.manual_seed(0)
    tiny = ["model.backbone.name=mobilenetv2_035", "data.image_size=96"]
    model = zoo.create_model("default", overrides=tiny)
    ckpt = tmp_path / "tiny.safetensors"
    atomic.save_safetensors(ckpt, {k: v.detach().clone() for k, v in model.state_dict().items()})
    flags = ["--checkpoint", str(ckpt), "--workers", "1", "--no-progress", "--device", "cpu", *sum((["-o", o] for o in tiny), [])]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["demo", "--images", str(instance_eval), "--out", str(tmp_path / "demo"), *flags]) == 0
        demo_out = capsys.readouterr().out
        labels = instance_eval / "labels.csv"
        sub = tmp_path / "sub.csv"
        assert main(["retrieve", "default", "--index", str(labels), "--query", str(labels), "--out", str(sub),
                     "--work", str(tmp_path / "work"), *flags]) == 0
        ret_out = capsys.readouterr().out
    finally:
        torch.set_num_threads(before)

    def value(text: str, name: str) -> float:
        return float(next(line.split()[1] for line in text.splitlines() if line.split()[:1] == [name]))

    assert value(demo_out, "mAP@100") == value(ret_out, "mAP@100")
    assert value(demo_out, "R@1") == value(ret_out, "R@1")
    # `zoo evaluate` (the metrics helper's command) scores the submission the same way
    assert main(["evaluate", str(sub), str(labels)]) == 0
    ev_out = capsys.readouterr().out
    assert value(ev_out, "map@100") == value(ret_out, "mAP@100")
    assert value(ev_out, "recall@1") == value(ret_out, "R@1")
    rows = read_csv(sub)
    assert len(rows) == 213 and all(r["id"] not in r["images"].split() for r in rows)


def test_postprocessor_chains(registry):
    """The recipe's chain runs through gather_inputs with the faiss search (head fusion, previous-output rules)."""
    train, tl = clustered(4, 3, 0)
    test, truth = clustered(4, 6, 1)
    codec = LabelMap.from_labels(tl)
    gl = codec.encode(tl, unknown=NON_LANDMARK)
    fusion = registry.create("postprocessor", "glr2020-knn-head-fusion", k=3, use_head=True)
    head = np.full((24, 4), 0.1, dtype=np.float32)
    head[np.arange(24), codec.encode(truth, unknown=NON_LANDMARK)] = 0.9
    rec = recognize(test, train, gl, chain=[fusion], head_logits=head)
    assert [codec.decode(int(v)) for v in rec.labels] == truth
    # a rule that transforms the previous output gets the nearest-neighbour prediction first
    rule = registry.create("postprocessor", "non-landmark-frequency", max_count=5)
    rec2 = recognize(test, train, gl, chain=[rule])
    assert (rec2.labels == NON_LANDMARK).all()  # every class is predicted 6 > 5 times
    knn = registry.create("postprocessor", "knn-retrieval", k=3, metric="l2")
    rank = retrieve(test, train, k=3, chain=[knn])
    assert rank.indices.shape == (24, 3)
    assert all(set(np.array(tl)[rank.indices[q]]) == {truth[q]} for q in range(24))


def test_recipe_inference_section_drives_recognize(tmp_path, capsys):
    train, tl = clustered(5, 3, 0)
    test, truth = clustered(5, 2, 1)
    tr, tr_labels = write_set(tmp_path / "train", "t", train, tl)
    te, _ = write_set(tmp_path / "test", "q", test, truth)
    out = tmp_path / "sub.csv"
    chain = "+inference={postprocess: [{type: glr2020-knn-head-fusion, k: 3, use_head: false}]}"
    assert main(["recognize", "default", "-o", chain, "--train", str(tr), "--train-labels", str(tr_labels),
                 "--test", str(te), "--out", str(out)]) == 0
    assert "KnnHeadFusion" in capsys.readouterr().out
    rows = read_csv(out)
    assert [r["landmarks"].split()[0] for r in rows] == truth
    # a ranking post-processor is refused by recognize, naming the right command
    bad = "+inference={postprocess: [{type: knn-retrieval}]}"
    assert main(["recognize", "default", "-o", bad, "--train", str(tr), "--train-labels", str(tr_labels),
                 "--test", str(te), "--out", str(out)]) == 1  # a user error
    assert "zoo retrieve" in capsys.readouterr().err
