"""Henkel & Singer 2020 post-processing against a direct per-query implementation of the released
notebook (psinger/kaggle-landmark-recognition-2020-1st-place ``notebooks/blend_ranking.ipynb``), and
the GLR2021 recognition ensemble post-processed per model family."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.inference.pipeline import model_dims_of
from zoo.inference.neighbours import gather_inputs
from zoo_postprocess.henkel_singer import HenkelSingerRecognition


def _cos_topk(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell 1 ``get_topk_cossim``: cosine of L2-normalised rows, ``torch.topk``."""
    a_t, b_t = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    sim = F.normalize(a_t, dim=1) @ F.normalize(b_t, dim=1).T
    vals, inds = torch.topk(sim, k=k, dim=1)
    return vals.numpy(), inds.numpy()


def notebook_henkel_singer(train: list[np.ndarray], val: list[np.ndarray], non_landmark: np.ndarray,
                           train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's cells 3-12, one query at a time where the notebook loops.

    ``train``/``val``: one array per model; ``non_landmark``: row indices of ``val`` that are non-landmarks
    (cell 3: ``val_embeddings_x[targets_x == 81313]``).
    """
    from sklearn.preprocessing import QuantileTransformer, normalize

    tr = np.hstack([normalize(x, norm="l2") for x in train])  # cells 3/5
    va = np.hstack([normalize(x, norm="l2") for x in val])
    nl = va[non_landmark]
    # cell 6: QuantileTransformer(output_distribution="normal") with sklearn 0.23.2's defaults
    # (n_quantiles=1000, capped at the sample count; subsample=1e5)
    qt = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(va)), subsample=100_000)
    qt.fit(va)
    tr, va, nl = qt.transform(tr), qt.transform(va), qt.transform(nl)
    dims = [x.shape[1] for x in train]
    starts = np.cumsum([0] + dims)
    vals_blend, labels_blend = [], []
    for i in range(len(train)):  # cell 7: per model slice
        s = slice(starts[i], starts[i + 1])
        vals_nl, _ = _cos_topk(tr[:, s], nl[:, s], 5)
        penalty = vals_nl.mean(axis=1)
        q = torch.tensor(va[:, s], dtype=torch.float32)
        g = torch.tensor(tr[:, s], dtype=torch.float32)
        sim = torch.clamp(F.normalize(q, dim=1) @ F.normalize(g, dim=1).T, 0, 1) - torch.tensor(penalty)[None, :]
        vals, inds = torch.topk(sim, k=3, dim=1)
        vals_blend.append(vals.numpy())
        labels_blend.append(train_labels[inds.numpy()])
    vals = np.concatenate(vals_blend, axis=1)
    labels = np.concatenate(labels_blend, axis=1)
    out_l, out_v = [], []
    for i in range(len(vals)):  # cell 9: per query, sum per label, first max
        cnts: dict[int, list[float]] = defaultdict(list)
        for j, lab in enumerate(labels[i]):
            cnts[int(lab)].append(float(vals[i][j]))
        sums = {k: float(np.sum(v)) for k, v in cnts.items()}
        best = max(sums, key=sums.get)
        out_l.append(best)
        out_v.append(sums[best])
    vals_2, _ = _cos_topk(va, nl, 11)  # cell 11: whole transformed embedding, k=11, column 0 dropped
    penalty_c = vals_2[:, 1:].mean(axis=1)
    return np.array(out_l), np.array(out_v, dtype=np.float64) - 1 * penalty_c  # cell 12


def _data(seed: int = 0, n_models: int = 3, dim: int = 16, n_classes: int = 12, n_train: int = 240,
          n_val: int = 120, n_nl: int = 40):
    rng = np.random.default_rng(seed)
    centres = [rng.normal(size=(n_classes, dim)) for _ in range(n_models)]
    y_train = rng.integers(0, n_classes, n_train)
    y_val = rng.integers(0, n_classes, n_val)
    train = [c[y_train] + 0.7 * rng.normal(size=(n_train, dim)) for c in centres]
    val = [c[y_val] + 0.9 * rng.normal(size=(n_val, dim)) for c in centres]
    nl = np.sort(rng.choice(n_val, n_nl, replace=False))
    for v in val:  # non-landmarks: no class structure
        v[nl] = rng.normal(size=(n_nl, dim)) * 1.3
    return train, val, nl, y_train


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """The ensemble descriptor: L2-normalised members concatenated, re-normalised as a whole."""
    x = np.hstack([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _zoo(pp, train, val, nl, y_train, dims):
    emb = {"query": _concat(val), "gallery": _concat(train), "non_landmark": _concat([v[nl] for v in val])}
    inputs = gather_inputs([pp], emb, model_dims=dims, labels={"gallery": y_train})
    return pp(inputs)


def test_defaults_equal_the_notebook():
    train, val, nl, y_train = _data()
    want_l, want_c = notebook_henkel_singer(train, val, nl, y_train)
    # candidates = every train image: the notebook scores them all
    out = _zoo(HenkelSingerRecognition(candidates=len(y_train)), train, val, nl, y_train, [16, 16, 16])
    np.testing.assert_array_equal(out.labels, want_l)
    np.testing.assert_allclose(out.confidences, want_c, rtol=1e-5, atol=1e-5)


def test_earlier_defaults_rank_differently():
    """The penalty on the untransformed descriptor without dropping column 0 (zoo's earlier defaults)
    changes the confidences, so the GAP ranking; the options still give it."""
    train, val, nl, y_train = _data(seed=1)
    _, want_c = notebook_henkel_singer(train, val, nl, y_train)
    old = _zoo(HenkelSingerRecognition(candidates=len(y_train), drop_first=False, test_penalty_transformed=False),
               train, val, nl, y_train, [16, 16, 16])
    assert not np.allclose(old.confidences, want_c, atol=1e-3)


def test_recognition_ensemble_is_post_processed_per_family(registry):
    """GLR2021 1st place §2.4.2: eight descriptors averaged per family (DOLG, Hybrid-Swin, EfficientNet)
    into three vectors; Henkel & Singer runs per family slice, not on the 1536-d vector as one model."""
    from zoo.assembly import _kwargs
    from zoo.recipes import get_recipe

    cfg = get_recipe("glr2021-1st-recognition-ensemble", registry=registry)
    member_cfgs = [_kwargs(m, drop=()) for m in cfg.ensemble.members]
    combiner = registry.create("ensemble", str(cfg.ensemble.combiner.type))
    dim = 16
    fake = SimpleNamespace(members=[SimpleNamespace(embedding_dim=dim) for _ in member_cfgs],
                           member_cfgs=member_cfgs, combiner=combiner, embedding_dim=3 * dim)
    dims = model_dims_of(fake)
    assert dims == [dim, dim, dim]
    # full size: three 512-d slices of the 1536-d descriptor
    full = SimpleNamespace(members=[SimpleNamespace(embedding_dim=512) for _ in member_cfgs],
                           member_cfgs=member_cfgs, combiner=combiner, embedding_dim=1536)
    assert model_dims_of(full) == [512, 512, 512]

    # eight member descriptors -> the family vectors the notebook's per-model steps run on
    rng = np.random.default_rng(4)
    n_classes, n_train, n_val = 10, 200, 90
    y_train, y_val = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_val)
    centres = [rng.normal(size=(n_classes, dim)) for _ in member_cfgs]
    nl = np.sort(rng.choice(n_val, 30, replace=False))

    def members(y, noise):
        out = [c[y] + noise * rng.normal(size=(len(y), dim)) for c in centres]
        return out

    tr_m, va_m = members(y_train, 0.7), members(y_val, 0.9)
    for v in va_m:
        v[nl] = rng.normal(size=(len(nl), dim))

    def combined(parts):
        t = combiner([torch.tensor(p, dtype=torch.float32) for p in parts], member_cfgs)
        return F.normalize(t, dim=1).numpy()

    q, g = combined(va_m), combined(tr_m)
    emb = {"query": q, "gallery": g, "non_landmark": q[nl]}
    pp = HenkelSingerRecognition(candidates=n_train)
    out = pp(gather_inputs([pp], emb, model_dims=dims, labels={"gallery": y_train}))
    families = [slice(0, dim), slice(dim, 2 * dim), slice(2 * dim, 3 * dim)]
    want_l, want_c = notebook_henkel_singer([g[:, s] for s in families], [q[:, s] for s in families], nl, y_train)
    np.testing.assert_array_equal(out.labels, want_l)
    np.testing.assert_allclose(out.confidences, want_c, rtol=1e-5, atol=1e-5)
    # the whole 1536-d vector as one model is a different post-processing
    one = pp(gather_inputs([pp], emb, model_dims=None, labels={"gallery": y_train}))
    assert not np.allclose(one.confidences, want_c, atol=1e-3)


@pytest.mark.parametrize("base", ["_inference-glr2021-1st", "_inference-glr2021-top100"])
def test_recipes_use_the_notebook_defaults(registry, base):
    from zoo.recipes import get_recipe

    spec = dict(get_recipe(base, registry=registry).inference.postprocess[0])
    hs = registry.create("postprocessor", spec.pop("type"), **spec)
    assert (hs.top_k, hs.train_penalty_k, hs.test_penalty_k, hs.drop_first, hs.test_penalty_transformed,
            hs.test_penalty_weight, hs.quantile) == (3, 5, 10, True, True, 1.0, True)
