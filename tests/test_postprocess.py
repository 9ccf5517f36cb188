"""Post-processors against direct per-query implementations on random data, plus contract checks."""

from __future__ import annotations

import numpy as np
import postprocess_oracles as reference
import pytest

from zoo.inference.neighbours import gather_inputs, split_models
from zoo.inference.search import exact_search
from zoo.postprocess import (
    NON_LANDMARK,
    NeighbourRequest,
    Neighbours,
    PostprocessError,
    PostprocessInputs,
    Recognition,
)
from zoo_postprocess.henkel_singer import HenkelSingerRecognition, quantile_normal
from zoo_postprocess.knn_head_fusion import KnnHeadFusion
from zoo_postprocess.knn_retrieval import KnnRetrieval
from zoo_postprocess.non_landmark_rules import DetectorRule, FrequencyRule, large_object_mask
from zoo_postprocess.retrieval_rerank import RetrievalRerank, merge_sum_top
from zoo_postprocess.softmax_topk import SoftmaxTopK


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng, n, d, centres, spread=0.6):
    """Embeddings near class centres, so neighbours share labels (realistic label collisions)."""
    labels = rng.integers(0, centres.shape[0], n)
    x = centres[labels] + spread * rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels.astype(np.int64)


@pytest.mark.parametrize("powers", [(8, 12, "multiply"), (9, 10, "multiply"), (8, 12, "add")])
def test_glr2020_fusion_matches_notebook_loop(powers):
    rng = np.random.default_rng(0)
    knn_p, head_p, combine = powers
    centres = _unit(rng, 30, 16)
    gallery, g_labels = _clustered(rng, 400, 16, centres[:25])  # classes 25..29 absent from the gallery
    query, _ = _clustered(rng, 300, 16, centres)
    head = np.clip(query @ centres.T + 0.1 * rng.normal(size=(300, 30)), -1, 1).astype(np.float32)
    pp = KnnHeadFusion(knn_power=knn_p, head_power=head_p, combine=combine)
    inputs = gather_inputs([pp], {"query": query, "gallery": gallery}, labels={"gallery": g_labels}, head_logits=head)
    out = pp(inputs)
    nb = inputs.neighbours["glr2020_knn"]
    assert nb.k == 5
    want_l, want_c = reference.glr2020_fusion_loop(nb.indices, nb.scores, g_labels, head, knn_p, head_p, combine=combine)
    np.testing.assert_array_equal(out.labels, want_l)
    np.testing.assert_allclose(out.confidences, want_c, rtol=1e-9, atol=0)
    # the head changes some predictions relative to the kNN-only vote, and never predicts an absent class
    knn_only = KnnHeadFusion(use_head=False)(inputs)
    assert set(np.unique(out.labels)) <= set(np.unique(g_labels))
    assert (knn_only.labels != out.labels).any() or combine == "add"


def test_glr2020_fusion_without_head_and_padding():
    # 2 gallery images only: neighbour lists padded with -1; kNN-only: sum of cos^8 per class
    nb = Neighbours(np.array([[0, 1, -1], [1, -1, -1]]), np.array([[0.9, 0.8, -np.inf], [0.5, -np.inf, -np.inf]]))
    inputs = PostprocessInputs(2, neighbours={"glr2020_knn": nb}, labels={"gallery": np.array([7, 7])})
    out = KnnHeadFusion(k=3, use_head=False)(inputs)
    np.testing.assert_array_equal(out.labels, [7, 7])
    np.testing.assert_allclose(out.confidences, [0.9**8 + 0.8**8, 0.5**8], rtol=1e-6)
    with pytest.raises(PostprocessError, match="head"):
        KnnHeadFusion(k=3)(inputs)


def test_glr2020_fusion_hand_example():
    """Seed document Fig. 2 shape: neighbours 1 and 4 are class A, 2 and 3 class B; the head tips it to B."""
    nb = Neighbours(np.array([[0, 1, 2, 3]]), np.array([[0.9, 0.85, 0.8, 0.7]]))
    labels = np.array([0, 1, 1, 0])
    head = np.array([[0.5, 0.6]], dtype=np.float32)
    inputs = PostprocessInputs(1, neighbours={"glr2020_knn": nb}, labels={"gallery": labels}, head_logits=head)
    a = 0.9**8 + 0.7**8
    b = 0.85**8 + 0.8**8
    knn_only = KnnHeadFusion(k=4, use_head=False)(inputs)
    assert knn_only.labels[0] == 0 and knn_only.confidences[0] == pytest.approx(a, rel=1e-6)
    fused = KnnHeadFusion(k=4, knn_power=8, head_power=12, head_top_k=2)(inputs)
    assert fused.labels[0] == 1
    assert fused.confidences[0] == pytest.approx(b * 0.6**12, rel=1e-5)


@pytest.mark.parametrize("rule,sim", [("vote", "mean"), ("top1", "max"), ("vote", "label_mean")])
def test_glr2021_rerank_matches_loop(rule, sim):
    rng = np.random.default_rng(1)
    centres = _unit(rng, 12, 16)
    train, t_labels = _clustered(rng, 300, 16, centres)
    index, _ = _clustered(rng, 120, 16, centres)
    query, _ = _clustered(rng, 60, 16, centres)
    # two "models": 16-d and 8-d slices of a concatenated descriptor
    extra = lambda n: _unit(rng, n, 8)  # noqa: E731
    emb = {
        "query": np.hstack([query, extra(60)]),
        "gallery": np.hstack([index, extra(120)]),
        "train": np.hstack([train, extra(300)]),
    }
    pp = RetrievalRerank(top_k=40, output_k=25, label_rule=rule, similarity=sim)
    inputs = gather_inputs([pp], emb, model_dims=[16, 8], labels={"train": t_labels})
    out = pp(inputs)
    assert out.indices.shape == (60, 25)
    lists = {k: [(n.indices, n.scores) for n in v] for k, v in inputs.model_neighbours.items()}
    want_r, want_s = reference.glr2021_rerank_loop(
        lists["rerank_query_index"], lists["rerank_query_train"], lists["rerank_index_train"], t_labels,
        top_k=40, output_k=25, label_rule=rule, similarity=sim,
    )
    np.testing.assert_array_equal(out.indices, want_r)
    np.testing.assert_allclose(out.scores, want_s.astype(np.float32), rtol=1e-6)
    # the re-ranking moves some ids relative to the plain cosine order of the first model
    assert (out.indices[:, :5] != inputs.model_neighbours["rerank_query_index"][0].indices[:, :5]).any()


def test_glr2021_rerank_hand_example():
    # one model, one query, two index images; query labelled 5 by its train neighbours
    train_labels = np.array([5, 5, 9, 9])
    qi = Neighbours(np.array([[0, 1]]), np.array([[0.6, 0.5]]))
    qt = Neighbours(np.array([[0, 1, 2]]), np.array([[0.9, 0.8, 0.7]]))  # vote: 5 (1.7) beats 9 (0.7)
    it = Neighbours(np.array([[2, 3, 0], [0, 1, 3]]), np.array([[0.9, 0.6, 0.3], [0.5, 0.4, 0.3]]))
    inputs = PostprocessInputs(1, model_neighbours={"rerank_query_index": [qi], "rerank_query_train": [qt],
                                                    "rerank_index_train": [it]}, labels={"train": train_labels})
    out = RetrievalRerank(top_k=2, output_k=2)(inputs)
    # index 0 is labelled 9 (down: 0.6 - 0.1*0.6), index 1 labelled 5 (up: 0.5 + 0.4)
    np.testing.assert_array_equal(out.indices, [[1, 0]])
    np.testing.assert_allclose(out.scores, [[0.9, 0.54]], rtol=1e-6)


def test_merge_sum_top_sums_across_models_and_breaks_ties_by_row():
    rows = np.array([[3, 1, -1, 1, 2, 3]])
    scores = np.array([[0.5, 0.25, 0.0, 0.25, 1.0, 0.5]])
    r, s = merge_sum_top(rows, scores, 3, n_gallery=4)
    np.testing.assert_array_equal(r, [[2, 3, 1]])  # 2: 1.0, 3: 1.0 (tie -> smaller row first), 1: 0.5
    np.testing.assert_allclose(s, [[1.0, 1.0, 0.5]])
    # a tie across the cut: the smaller rows win
    r, s = merge_sum_top(np.array([[5, 4, 3, 9, -1]]), np.array([[1.0, 1.0, 1.0, 2.0, 0.0]]), 3, n_gallery=10)
    np.testing.assert_array_equal(r, [[9, 3, 4]])
    # fewer candidates than k: padded
    r, s = merge_sum_top(np.array([[1, -1]]), np.array([[0.5, 0.0]]), 3, n_gallery=10)
    np.testing.assert_array_equal(r, [[1, -1, -1]])
    assert np.isneginf(s[0, 1:]).all()


@pytest.mark.parametrize("blocks,width,n_gallery,output_k", [(2, 30, 40, 10), (3, 20, 15, 8), (1, 25, 30, 40)])
def test_merge_sum_top_equals_a_dict_loop(blocks, width, n_gallery, output_k):
    """Random lists with repeated rows inside a block (runs of 3+), padding and exact score ties."""
    rng = np.random.default_rng(blocks * 100 + width)
    q = 300
    rows = [np.where(rng.random((q, width)) < 0.1, -1, rng.integers(0, n_gallery, (q, width))) for _ in range(blocks)]
    scores = [rng.integers(-4, 8, (q, width)) / 4.0 for _ in range(blocks)]  # quarters: exact sums, many ties
    r, s = merge_sum_top(rows, scores, output_k, n_gallery)
    r_cat, s_cat = merge_sum_top(np.concatenate(rows, 1), np.concatenate(scores, 1), output_k, n_gallery)
    np.testing.assert_array_equal(r, r_cat)
    np.testing.assert_array_equal(s, s_cat)
    for i in range(q):
        total: dict[int, float] = {}
        for rb, sb in zip(rows, scores):
            for row, score in zip(rb[i], sb[i]):
                if row >= 0:
                    total[int(row)] = total.get(int(row), 0.0) + float(score)
        best = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:output_k]
        want_r = [k for k, _ in best] + [-1] * (output_k - len(best))
        want_s = [v for _, v in best] + [-np.inf] * (output_k - len(best))
        assert r[i].tolist() == want_r, i
        assert s[i].tolist() == want_s, i


def test_henkel_singer_matches_loop():
    rng = np.random.default_rng(2)
    centres = _unit(rng, 15, 12)
    gallery, g_labels = _clustered(rng, 250, 12, centres)
    query, _ = _clustered(rng, 80, 12, centres)
    nonlm = _unit(rng, 60, 12)
    emb = {"query": np.hstack([query, _unit(rng, 80, 12)]), "gallery": np.hstack([gallery, _unit(rng, 250, 12)]),
           "non_landmark": np.hstack([nonlm, _unit(rng, 60, 12)])}
    # the earlier zoo variant: test penalty on the raw concatenation, no column dropped
    pp = HenkelSingerRecognition(candidates=20, drop_first=False, test_penalty_transformed=False)
    inputs = gather_inputs([pp], emb, model_dims=[12, 12], labels={"gallery": g_labels})
    out = pp(inputs)
    mn = inputs.model_neighbours
    want_l, want_c = reference.henkel_singer_loop(
        [(n.indices, n.scores) for n in mn["hs_query_gallery"]],
        [(n.indices, n.scores) for n in mn["hs_gallery_non_landmark"]],
        (inputs.neighbours["hs_query_non_landmark"].indices, inputs.neighbours["hs_query_non_landmark"].scores),
        g_labels,
    )
    np.testing.assert_array_equal(out.labels, want_l)
    np.testing.assert_allclose(out.confidences, want_c, rtol=1e-9, atol=1e-12)
    # the per-model lists were searched on quantile-normalised slices, the test penalty on the raw concatenation
    raw = exact_search(split_models(emb["query"], [12, 12])[0], split_models(emb["gallery"], [12, 12])[0], 20)[1]
    assert (raw != mn["hs_query_gallery"][0].indices).any()
    np.testing.assert_array_equal(
        inputs.neighbours["hs_query_non_landmark"].indices, exact_search(emb["query"], emb["non_landmark"], 10)[1]
    )


def test_henkel_singer_hand_example():
    # one model; gallery 0 (label 1) is close to non-landmarks (penalty 0.5), gallery 1, 2 (label 2) are not
    qg = Neighbours(np.array([[0, 1, 2]]), np.array([[0.95, 0.7, 1.2]]))  # 1.2 is clamped to 1
    gn = Neighbours(np.array([[0, 1], [0, 1], [0, 1]]), np.array([[0.6, 0.4], [0.1, 0.1], [0.0, 0.0]]))
    qn = Neighbours(np.array([[0, 1]]), np.array([[0.3, 0.1]]))
    inputs = PostprocessInputs(1, model_neighbours={"hs_query_gallery": [qg], "hs_gallery_non_landmark": [gn]},
                               neighbours={"hs_query_non_landmark": qn}, labels={"gallery": np.array([1, 2, 2])})
    out = HenkelSingerRecognition(top_k=3, candidates=3, train_penalty_k=2, test_penalty_k=2, drop_first=False)(inputs)
    assert out.labels[0] == 2
    assert out.confidences[0] == pytest.approx((1.0 - 0.0) + (0.7 - 0.1) - 0.2)


def test_quantile_normal_fits_on_queries_and_normalises():
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(3)
    sets = {"query": rng.exponential(size=(200, 6)).astype(np.float32),
            "gallery": 3 * rng.exponential(size=(50, 6)).astype(np.float32)}
    out = quantile_normal(sets)
    np.testing.assert_allclose(np.linalg.norm(out["gallery"], axis=1), 1.0, rtol=1e-5)
    qt = QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=0).fit(sets["query"])
    want = qt.transform(sets["gallery"])
    np.testing.assert_allclose(out["gallery"], want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)
    # fitting on the gallery instead gives something else
    other = quantile_normal(sets, fit_on="gallery")
    assert not np.allclose(other["gallery"], out["gallery"], atol=1e-3)


def test_frequency_rule_matches_loop_and_keeps_confidences():
    rng = np.random.default_rng(4)
    labels = rng.integers(-1, 6, 200)
    labels[:30] = 9  # 30 > 20 times
    rec = Recognition(labels, rng.random(200))
    out = FrequencyRule(max_count=20)(PostprocessInputs(200), rec)
    np.testing.assert_array_equal(out.labels, reference.frequency_rule_loop(labels, 20))
    assert (out.labels[:30] == NON_LANDMARK).all()
    np.testing.assert_array_equal(out.confidences, rec.confidences)
    with pytest.raises(PostprocessError, match="after a recognition"):
        FrequencyRule()(PostprocessInputs(1), None)


def test_large_object_mask():
    dets = [
        (np.array([[0, 0, 50, 50]]), np.array([0.9])),  # 2500 / 10000 = 0.25 < 1/2.7
        (np.array([[0, 0, 50, 50], [50, 50, 100, 100]]), np.array([0.9, 0.6])),  # 0.5 > 0.37
        (np.array([[0, 0, 100, 100]]), np.array([0.4])),  # low confidence
        (np.zeros((0, 4)), np.zeros(0)),
        (np.array([[-50, -50, 200, 200]]), np.array([0.5])),  # clipped to the image, conf == 0.5 counts
    ]
    mask = large_object_mask(dets, [(100, 100)] * 5, 0.5, 1 / 2.7)
    np.testing.assert_array_equal(mask, [False, True, False, False, True])


def test_detector_rule_uses_a_registered_detector():
    from zoo import hookimpl
    from zoo.plugins import load_registry

    calls = []

    class StubDetectorPlugin:
        @hookimpl
        def zoo_register_detectors(self, registrar):
            def factory(threshold: float = 0.0):
                def detect(images):
                    calls.append(len(images))
                    # a box over the whole image for bright images, nothing for dark ones
                    return [(np.array([[0, 0, im.shape[1], im.shape[0]]]), np.array([0.8])) if im.mean() > 127
                            else (np.zeros((0, 4)), np.zeros(0)) for im in images]
                return detect
            registrar.add("stub", factory, description="test stub")

    reg = load_registry(plugins=[("stub-detector", StubDetectorPlugin())], entry_points=False)
    pp = DetectorRule(detector="stub", registry=reg, batch_size=2)
    images = [np.full((20, 30, 3), v, np.uint8) for v in (200, 10, 250, 0, 255)]
    rec = Recognition(np.array([1, 2, 3, 4, 5]), np.ones(5))
    out = pp(PostprocessInputs(5, images=images), rec)
    np.testing.assert_array_equal(out.labels, [NON_LANDMARK, 2, NON_LANDMARK, 4, NON_LANDMARK])
    assert calls == [2, 2, 1]
    with pytest.raises(Exception, match="unknown detector"):
        DetectorRule(detector="yolo", registry=reg)(PostprocessInputs(5, images=images), rec)


def test_softmax_topk():
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    out = SoftmaxTopK(k=2)(PostprocessInputs(2, head_logits=logits))
    np.testing.assert_array_equal(out.top_labels, [[1, 2], [2, 0]])
    p = np.exp([1.0, 3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    np.testing.assert_allclose(out.confidences[0], p[1], rtol=1e-6)
    np.testing.assert_array_equal(out.labels, out.top_labels[:, 0])


def test_knn_retrieval_l2_and_exclude_self():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    pp = KnnRetrieval(k=5, metric="l2", exclude_self=True)
    inputs = gather_inputs([pp], {"query": x, "gallery": x})
    out = pp(inputs)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(out.indices, np.argsort(d, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(out.scores, -np.sort(d, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
    assert (out.indices != np.arange(30)[:, None]).all()


def test_gather_inputs_errors_name_the_missing_set():
    pp = HenkelSingerRecognition()
    with pytest.raises(PostprocessError, match="non_landmark"):
        gather_inputs([pp], {"query": np.ones((2, 4)), "gallery": np.ones((3, 4))})
    with pytest.raises(PostprocessError, match="unknown image set"):
        NeighbourRequest("x", "queries", "gallery", 3)


@pytest.mark.parametrize("name", ["glr2020-knn-head-fusion", "glr2021-retrieval-rerank", "henkel-singer-2020",
                                  "knn-retrieval", "softmax-topk", "non-landmark-frequency"])
def test_registered_postprocessors_follow_the_contract(registry, name):
    entry = registry.get("postprocessor", name)
    pp = entry.create(**entry.meta.get("test_kwargs", {}))
    assert pp.produces == entry.meta["produces"] in ("recognition", "ranking")
    assert all(isinstance(r, NeighbourRequest) for r in pp.requests)
    assert isinstance(pp.needs, frozenset)
