"""The per-system ``inference:`` bases: their post-processor chains build and carry the seed constants."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.inference.neighbours import gather_inputs
from zoo.inference.search import exact_search
from zoo.postprocess import NeighbourRequest
from zoo.recipes import get_recipe, list_recipes

BASES = {
    "_inference-glr2020-3rd": ["glr2020-knn-head-fusion"],
    "_inference-glr2021-1st": ["henkel-singer-2020"],
    "_inference-glr2021-1st-retrieval": ["glr2021-retrieval-rerank"],
    "_inference-glr2021-top100": ["henkel-singer-2020", "non-landmark-frequency"],
    "_inference-guie2022-2nd": ["knn-retrieval"],
    "_inference-glr2019": ["softmax-topk"],
}


def _chain(cfg, registry):
    out = []
    for item in cfg.inference.postprocess:
        spec = dict(item)
        out.append(registry.create("postprocessor", spec.pop("type"), **spec))
    return out


@pytest.mark.parametrize("base", sorted(BASES))
def test_inference_base_builds_one_kind_of_chain(registry, base):
    cfg = get_recipe(base, registry=registry)
    chain = _chain(cfg, registry)
    assert [type(pp).name for pp in chain] == BASES[base]
    assert len({pp.produces for pp in chain}) == 1, "zoo recognize / retrieve run one kind of chain"
    for pp in chain[1:]:
        assert "previous" in pp.needs
    for pp in chain:
        assert all(isinstance(r, NeighbourRequest) for r in pp.requests)


def test_seed_constants(registry):
    fusion = _chain(get_recipe("_inference-glr2020-3rd", registry=registry), registry)[0]
    assert (fusion.k, fusion.knn_power, fusion.head_power, fusion.head_top_k) == (5, 8.0, 12.0, 5)
    notebook = _chain(get_recipe("_inference-glr2020-3rd", ["inference.knn_power=9",
                                                             "inference.head_power=10"], registry=registry), registry)[0]
    assert (notebook.knn_power, notebook.head_power) == (9.0, 10.0)
    rerank = _chain(get_recipe("_inference-glr2021-1st-retrieval", registry=registry), registry)[0]
    assert (rerank.top_k, rerank.output_k, rerank.train_k, rerank.down_weight) == (750, 100, 3, 0.1)
    assert (rerank.label_rule, rerank.similarity) == ("vote", "mean")
    other = _chain(get_recipe("_inference-glr2021-1st-retrieval", ["inference.label_rule=top1", "inference.similarity=max"],
                              registry=registry), registry)[0]
    assert (other.label_rule, other.similarity) == ("top1", "max")
    hs, freq = _chain(get_recipe("_inference-glr2021-top100", registry=registry), registry)
    assert (hs.top_k, hs.train_penalty_k, hs.test_penalty_k, freq.max_count) == (3, 5, 10, 20)
    knn = _chain(get_recipe("_inference-guie2022-2nd", registry=registry), registry)[0]
    assert (knn.k, knn.metric) == (5, "l2")
    assert _chain(get_recipe("_inference-glr2019", registry=registry), registry)[0].k == 20


def test_member_recipes_extend_their_inference_base(registry):
    expect = {"glr2020-3rd-*": "glr2020-knn-head-fusion", "glr2021-top100-*": "henkel-singer-2020",
              "guie2022-2nd-*": "knn-retrieval"}
    for pattern, first in expect.items():
        names = list_recipes(pattern, registry=registry)
        assert names
        for name in names:
            cfg = get_recipe(name, registry=registry)
            assert cfg.inference.postprocess[0].type == first, name
    assert get_recipe("glr2021-1st-retrieval-ensemble", registry=registry).inference.postprocess[0].type == \
        "glr2021-retrieval-rerank"
    assert get_recipe("glr2021-1st-dolg-b5", registry=registry).inference.postprocess[0].type == "henkel-singer-2020"


def test_top100_chain_end_to_end_on_random_embeddings(registry):
    """Henkel & Singer then the frequency rule through gather_inputs, with a tiny max_count."""
    rng = np.random.default_rng(0)
    cfg = get_recipe("_inference-glr2021-top100", ["inference.max_count=3",
                                                    "inference.candidates=10"], registry=registry)
    chain = _chain(cfg, registry)
    emb = {s: rng.normal(size=(n, 8)).astype(np.float32) for s, n in (("query", 40), ("gallery", 60), ("non_landmark", 20))}
    emb = {s: x / np.linalg.norm(x, axis=1, keepdims=True) for s, x in emb.items()}
    labels = np.arange(60) % 6
    inputs = gather_inputs(chain, emb, search=exact_search, labels={"gallery": labels})
    out = None
    for pp in chain:
        out = pp(inputs, out)
    first = chain[0](inputs)
    counts = np.bincount(first.labels[first.labels >= 0], minlength=6)
    frequent = np.flatnonzero(counts > 3)
    assert frequent.size  # 40 queries over 6 labels: some label is predicted more than 3 times
    assert set(out.labels[np.isin(first.labels, frequent)]) == {-1}
    keep = ~np.isin(first.labels, frequent)
    np.testing.assert_array_equal(out.labels[keep], first.labels[keep])
