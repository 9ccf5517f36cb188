"""Contract tests parametrized over every registered component (timm-style).

Each entry is built with its defaults (or the ``test_kwargs`` its plugin declares for a tiny CPU
build) and must do what its kind promises on a tiny input.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from zoo.assembly import build_nested_components
from zoo.plugins import load_registry

_REGISTRY = load_registry(strict=False, disable=(), only=())
ENTRIES = sorted(_REGISTRY.entries(), key=lambda e: (e.kind, e.name))


def _kw(entry) -> dict:
    """The entry's tiny test arguments, nested ``{component: KIND, ...}`` parts built as build_model does."""
    return build_nested_components(entry.meta.get("test_kwargs") or {}, _REGISTRY, f"{entry.kind}:{entry.name}")


def _id(entry) -> str:
    return f"{entry.kind}:{entry.name}"


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_component_is_documented_and_owned(entry):
    assert entry.description, f"{entry.kind} '{entry.name}' has no description/docstring"
    assert entry.owner.name and entry.owner.dist, "every entry records its plugin and distribution"


def _backbone(entry):
    model = entry.create(**_kw(entry)).eval()
    size = int(entry.meta.get("test_input_size", 64))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    assert hasattr(model, "num_features") and model.num_features > 0
    fmt = getattr(model, "output_fmt", "NCHW")
    if fmt == "NCHW":
        assert y.ndim == 4 and y.shape[:2] == (2, model.num_features)
    else:
        assert y.shape == (2, model.num_features)
    assert torch.isfinite(y).all()


def _pooling(entry):
    pool = entry.create(**_kw(entry))
    x = torch.rand(2, 8, 5, 5) + 0.1
    y = pool(x)
    assert y.reshape(2, -1).shape == (2, 8)
    assert torch.isfinite(y).all()
    # pooling a constant map returns the constant
    c = torch.full((1, 4, 3, 3), 0.7)
    assert torch.allclose(pool(c).reshape(-1), torch.full((4,), 0.7), atol=1e-4)


def _neck(entry):
    kw = {"in_features": 16, "out_features": 8, **_kw(entry)}
    neck = entry.create(**kw).train()
    x = torch.randn(4, kw["in_features"], requires_grad=True)
    y = neck(x)
    assert y.shape == (4, kw["out_features"]) and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _head(entry):
    kw = {"in_features": 8, "num_classes": 5, **_kw(entry)}
    head = entry.create(**kw)
    out = head(torch.randn(3, kw["in_features"]))
    assert out.shape == (3, kw["num_classes"]) and torch.isfinite(out).all()
    if entry.meta.get("output", "cosine") == "cosine":
        assert out.abs().max() <= 1.0 + 1e-5, "cosine heads return cosines (set meta output='logits' otherwise)"


def _loss(entry):
    loss = entry.create(**_kw(entry))
    if hasattr(loss, "set_class_counts"):
        loss.set_class_counts(np.array([5, 1, 3, 2, 8]))
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(1)
    logits = (torch.rand(4, 5) * 2 - 1).requires_grad_()
    value = loss(logits, torch.tensor([0, 1, 4, 2]))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()


def _sampler(entry):
    role = entry.meta.get("role", "sampler")
    if role == "sampler":
        labels = np.repeat(np.arange(5), 4)
        sampler = entry.create(labels, **_kw(entry))
        idx = list(iter(sampler))
        assert len(idx) == len(sampler) and all(0 <= i < len(labels) for i in idx)
    elif role == "resample":
        from zoo.data.images import ImageRecord

        records = [ImageRecord(f"i{i}", f"i{i}.jpg", str(i % 4)) for i in range(40)]
        out = entry.create(**_kw(entry))(records, seed=0)
        assert out and all(isinstance(r, ImageRecord) for r in out)
    else:
        assert callable(entry.create(**_kw(entry)))


def _augmentation(entry):
    role = entry.meta.get("role", "pipeline")
    if role == "batch":
        mixer = entry.create(**_kw(entry))
        images, targets = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
        from zoo.train.step import MixedTargets

        out_images, mixed = mixer(images, targets, 3, torch.Generator().manual_seed(0))
        assert out_images.shape == images.shape
        if isinstance(mixed, MixedTargets):
            assert torch.equal(mixed.targets, targets) and 0.0 <= mixed.lam <= 1.0
            assert sorted(mixed.shuffled.tolist()) == sorted(targets.tolist())
        else:  # an unmixed batch keeps its int64 targets
            assert torch.equal(mixed, targets) and torch.equal(out_images, images)
        return
    pipe = entry.create(image_size=32, **_kw(entry))
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    out = pipe(image=image)["image"]
    assert tuple(out.shape[-2:]) == (32, 32) and out.shape[0] == 3


def _optimizer(entry):
    p = nn.Parameter(torch.ones(3))
    opt = entry.create([{"params": [p]}], lr=0.1, **_kw(entry))
    (p ** 2).sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))


def _param_groups(entry):
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    groups = entry.create(model, lr=0.1, **_kw(entry))
    got = {id(p) for g in groups for p in g["params"]}
    assert got == {id(p) for p in model.parameters() if p.requires_grad}


def _scheduler(entry):
    p = nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = entry.create(opt, **_kw(entry))
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(np.isfinite(lrs)) and len(set(lrs)) > 1


#: members (width, family) of the ensemble check and the width each combiner must return for them
ENSEMBLE_MEMBERS = [(4, "dolg"), (6, "swin"), (4, "dolg"), (3, "effnet")]
ENSEMBLE_WIDTHS = {
    "concat": 4 + 6 + 4 + 3,  # every member's descriptor side by side
    "family_mean_concat": 4 + 6 + 3,  # one (averaged) descriptor per family, families in first-seen order
}


def _ensemble(entry):
    assert entry.name in ENSEMBLE_WIDTHS, (
        f"ensemble '{entry.name}' has no expected width in tests/test_contract_components.py::ENSEMBLE_WIDTHS"
    )
    combine = entry.create(**_kw(entry))
    embs = [torch.randn(2, w) for w, _ in ENSEMBLE_MEMBERS]
    cfgs = [{"recipe": f"m{i}", "family": fam} for i, (_, fam) in enumerate(ENSEMBLE_MEMBERS)]
    out = combine(embs, cfgs)
    assert out.shape == (2, ENSEMBLE_WIDTHS[entry.name]) and torch.isfinite(out).all()
    # the probe ZooEnsemble uses for its embedding_dim (zeros) gives the same width
    assert combine([torch.zeros(1, w) for w, _ in ENSEMBLE_MEMBERS], cfgs).shape[1] == ENSEMBLE_WIDTHS[entry.name]
    # members are fused in order: swapping two members of different families changes the result
    swapped = combine([embs[1], embs[0], *embs[2:]], [cfgs[1], cfgs[0], *cfgs[2:]])
    assert swapped.shape == out.shape and not torch.allclose(swapped, out)


# -- metrics: a hand-computed input per metric input type ---------------------------------------------
#: ranking input (ids; -1 padding): q0 hits at ranks 1 and 3 of 2 relevant, q1 a hit at rank 4 of 3,
#: q2 a repeated relevant id (counts once) at rank 1, q3 no relevant ids (left out), q4 no hit
RANKED = [[3, 7, 1, 9, 4], [5, 2, 8, 6, 0], [2, 2, 4, -1, -1], [0, 1, 2, 3, 4], [8, 9, 10, 11, 12]]
RELEVANT = [[1, 3], [6, 11, 12], [2], [], [13]]
#: recognition input: q2/q4 are non-landmarks (-1); q4's wrong guess has the highest confidence
PRED = [1, 2, -1, 3, 4]
CONF = [0.9, 0.8, 0.95, 0.7, 0.99]
TRUTH = [1, 5, -1, 3, -1]
#: the known value of each registered metric on that input (ranking metrics at k=5)
KNOWN_METRIC_VALUES = {
    "map_at_k": (1 / 1 + 2 / 3) / 2 / 4 + (1 / 4) / 3 / 4 + 1 / 4,  # AP 5/6, 1/12, 1, 0 -> 23/48
    "mp_at_k": (1 / 2 + 0 + 1 + 0) / 4,  # precision over the first min(#relevant, 5) ranks
    "recall_at_k": 3 / 4,  # q0, q1, q2 have a relevant id in the top 5
    "gap": (1 / 2 + 2 / 4) / 3,  # q4 (miss), q0 (hit), q1 (miss), q3 (hit); 3 landmark queries
    "gap_landmarks_only": (1 / 1 + 2 / 3) / 3,  # q4 ignored: q0 (hit), q1 (miss), q3 (hit)
}


def _metric(entry):
    assert entry.name in KNOWN_METRIC_VALUES, (
        f"metric '{entry.name}' has no known value in tests/test_contract_components.py::KNOWN_METRIC_VALUES"
    )
    kind = entry.meta.get("input")
    if kind == "ranking":
        metric = entry.create(**{**_kw(entry), "k": 5})
        value = metric(np.array(RANKED), RELEVANT)
        perfect = metric(np.array([[1, 3, 0], [6, 11, 12], [2, 0, 7]]), [[1, 3], [6, 11, 12], [2]])
    elif kind == "recognition":
        metric = entry.create(**_kw(entry))
        value = metric(np.array(PRED), np.array(CONF), np.array(TRUTH))
        perfect = metric(np.array([1, 5, 3]), np.array([0.5, 0.9, 0.1]), np.array([1, 5, 3]))
    else:
        raise AssertionError(f"metric '{entry.name}': meta input must be 'ranking' or 'recognition', got {kind!r}")
    assert isinstance(value, float)
    assert value == pytest.approx(KNOWN_METRIC_VALUES[entry.name], abs=1e-12)
    assert perfect == pytest.approx(1.0)


# -- post-processors: a tiny synthetic set through the orchestrator ------------------------------------
Q, N_GALLERY, N_NON_LANDMARK, N_CLASSES, MODEL_DIMS = 12, 40, 10, 5, [8, 8]


class _TinyDetector:
    """A detector registry for ``non-landmark-detector``: one box over the whole of every even query image."""

    def create(self, kind, name, **kwargs):
        assert kind == "detector"

        def detect(images):
            out = []
            for i, im in enumerate(images):
                h, w = im.shape[:2]
                big = int(im[0, 0, 0]) % 2 == 0  # the image's first pixel holds its query number
                out.append((np.array([[0, 0, w, h]] if big else [[0, 0, 1, 1]], np.float32), np.array([0.9])))
            return out

        return detect


def _postprocess_set():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(N_CLASSES, sum(MODEL_DIMS))).astype(np.float32)

    def near(labels):
        x = centres[labels] + 0.5 * rng.normal(size=(len(labels), centres.shape[1])).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    gallery_labels = np.arange(N_GALLERY) % N_CLASSES
    query_labels = rng.integers(0, N_CLASSES, Q)
    embeddings = {"query": near(query_labels), "gallery": near(gallery_labels), "train": near(gallery_labels),
                  "non_landmark": near(rng.integers(0, N_CLASSES, N_NON_LANDMARK))}
    head = np.clip(embeddings["query"] @ (centres / np.linalg.norm(centres, axis=1, keepdims=True)).T, -1, 1)
    images = [np.full((6, 8, 3), q, np.uint8) for q in range(Q)]
    labels = {"gallery": gallery_labels.astype(np.int64), "train": gallery_labels.astype(np.int64)}
    return embeddings, labels, head.astype(np.float32), images


def _check_ranking(out, n_rows):
    from zoo.postprocess import Neighbours

    assert isinstance(out, Neighbours) and out.num_queries == Q and out.k >= 1
    valid = out.valid
    # padding only at the end of a list, with -inf scores; real rows are gallery rows, each once
    assert (valid[:, :-1] | ~valid[:, 1:]).all()
    assert np.isneginf(out.scores[~valid]).all() and np.isfinite(out.scores[valid]).all()
    assert ((out.indices[valid] >= 0) & (out.indices[valid] < n_rows)).all()
    for q in range(Q):
        rows = out.indices[q][valid[q]]
        assert len(set(rows.tolist())) == rows.size, f"query {q} lists a gallery row twice"
    assert (np.diff(out.scores, axis=1)[valid[:, 1:]] <= 0).all(), "scores must be sorted best first"


def _check_recognition(out, known_labels):
    from zoo.postprocess import NON_LANDMARK, Recognition

    assert isinstance(out, Recognition) and out.num_queries == Q
    assert set(out.labels.tolist()) <= set(known_labels.tolist()) | {NON_LANDMARK}
    assert np.isfinite(out.confidences[out.is_landmark]).all()
    if out.top_labels is not None:
        tc = out.top_confidences
        assert (np.diff(np.where(np.isneginf(tc), -1e300, tc), axis=1) <= 0).all(), "candidates sorted best first"
        assert np.array_equal(out.labels, out.top_labels[:, 0])


def _postprocessor(entry):
    import copy

    from zoo.inference.neighbours import gather_inputs
    from zoo.inference.search import exact_search
    from zoo.postprocess import Neighbours, Postprocessor, Recognition

    kw = _kw(entry)
    if "detector" in kw:  # no detector is registered: hand it a registry holding a tiny one
        kw["registry"] = _TinyDetector()
    pp = entry.create(**kw)
    assert isinstance(pp, Postprocessor)
    produces = entry.meta.get("produces")
    assert produces in ("recognition", "ranking") and pp.produces == produces
    embeddings, labels, head, images = _postprocess_set()
    inputs = gather_inputs([pp], embeddings, search=exact_search, model_dims=MODEL_DIMS, labels=labels,
                           head_logits=head, images=images)
    for req in pp.requests:  # every request was searched, in the right image sets and widths
        got = inputs.model_neighbours[req.key] if req.per_model else [inputs.neighbours[req.key]]
        assert len(got) == (len(MODEL_DIMS) if req.per_model else 1)
        assert all(nb.num_queries == len(embeddings[req.query]) and nb.k == req.k for nb in got)
    previous = None
    if "previous" in pp.needs:  # a base output to transform: nearest gallery image / plain ranking
        s, r = exact_search(embeddings["query"], embeddings["gallery"], 10)
        previous = (Recognition(labels["gallery"][r[:, 0]], s[:, 0]) if produces == "recognition"
                    else Neighbours(r, s))
    before = copy.deepcopy((inputs, previous))
    out = pp(inputs, previous)
    if produces == "ranking":
        _check_ranking(out, N_GALLERY)
    else:
        _check_recognition(out, labels["gallery"])
    # it must not modify its arguments, and the same inputs give the same output
    assert _same(inputs, before[0]) and _same(previous, before[1]), "a post-processor modified its arguments"
    again = pp(inputs, previous)
    first = (out.labels, out.confidences) if produces == "recognition" else (out.indices, out.scores)
    second = (again.labels, again.confidences) if produces == "recognition" else (again.indices, again.scores)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))


def _same(a, b) -> bool:
    """Deep equality of nested inputs (dataclasses, dicts, lists, arrays)."""
    import dataclasses

    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _same(vars(a), vars(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return a == b


# -- converters: zoo state dict -> upstream layout (the inverse, written here) -> converter -> same tensors --
def _renamed(own, rename, extra=()):
    """An upstream state dict holding ``own``'s very tensors under upstream names (+ ``extra`` keys)."""
    up = {rename(k): v for k, v in own.items()}
    assert len(up) == len(own), "the inverse mapping must be one-to-one"
    up.update({k: torch.empty(2, device="meta") for k in extra})
    return up


def _strip(prefix, then=""):
    return lambda k: then + k[len(prefix):] if k.startswith(prefix) else None


def _first(*rules):
    def rename(k):
        for rule in rules:
            out = rule(k)
            if out is not None:
                return out
        return k

    return rename


def _inverse_lukemelas(own):
    """timm ``tf_efficientnet_lite*`` keys -> lukemelas (``_conv_stem``, flat ``_blocks.N``, ``_fc``)."""
    from zoo_converters.lukemelas import _DS, _IR, _TOP

    top = {v: k for k, v in _TOP.items()}
    blocks = sorted({tuple(int(x) for x in k.split(".")[1:3]) for k in own if k.startswith("blocks.")})
    flat = {b: i for i, b in enumerate(blocks)}
    ir = {b for b in blocks if any(k.startswith("blocks.%d.%d.conv_pwl." % b) for k in own)}

    def rename(k):
        if not k.startswith("blocks."):
            module, _, rest = k.partition(".")
            return f"{top[module]}.{rest}"
        _, s_, i_, rest = k.split(".", 3)
        b = (int(s_), int(i_))
        names = {v: m for m, v in (_IR if b in ir else _DS).items()}
        sub = max((n for n in names if rest.startswith(n + ".")), key=len)
        return f"_blocks.{flat[b]}.{names[sub]}.{rest[len(sub) + 1:]}"

    return _renamed(own, rename)


def _inverse_xception(own):
    from zoo_glr2019.converter import FEATURE_NAMES

    index = {name: i for i, name in FEATURE_NAMES.items()}

    def features(k):
        if not k.startswith("backbone.net."):
            return None
        name, _, rest = k[len("backbone.net."):].partition(".")
        return f"xception._features.{index[name]}.{rest}"

    return _renamed(own, _first(features, _strip("neck.bilinearpool.", "xception._classifier.bilinearpool."),
                                _strip("neck.attn.", "xception._classifier.attn."),
                                _strip("head.", "xception._classifier.linear.")))


#: converter -> cases ``(recipe or "timm:<model>", upstream state dict from the target's own state dict)``;
#: targets are built on the meta device at full size
CONVERTER_CASES = {
    "glr2020-3rd": [("glr2020-3rd-effnet-b3", lambda own: _renamed(own, _first(
        _strip("backbone.net.", "enet."), _strip("neck.0.", "feat."), _strip("head.weight", "metric_classify.weight"))))],
    "glr2021-1st": [
        ("glr2021-1st-dolg-b5", lambda own: _renamed(own, _first(
            _strip("backbone.encoder.", "backbone."),
            *[_strip(f"backbone.{p}", p) for p in ("mam.", "attention2d.", "conv_g.", "bn_g.", "global_pool.")]))),
        ("glr2021-1st-hybrid-b3-swin224", lambda own: _renamed(
            own, _first(_strip("backbone.swin.", "backbone.")), extra=["global_pool.p"])),
    ],
    "glr2021-top100": [("glr2021-top100-effnet-b0", lambda own: _renamed(
        own, lambda k: k, extra=["backbone.net.classifier.weight", "backbone.net.classifier.bias"]))],
    "guie2022-2nd": [("guie2022-2nd-vith14-64d", lambda own: _renamed(
        own, _first(_strip("neck.", "Neck.neck.")), extra=["backbone.net.proj"]))],
    "glr2019-xception": [("glr2019-xception-cbp", _inverse_xception)],
    "lukemelas-efficientnet-lite": [("timm:tf_efficientnet_lite0", _inverse_lukemelas)],
    "torchvision-mobilenetv2": [("timm:mobilenetv2_100", None)],  # upstream: torchvision's own model
}


def _converter(entry):
    import timm

    from zoo import create_model
    from zoo.recipes import get_recipe

    assert entry.name in CONVERTER_CASES, (
        f"converter '{entry.name}' has no round-trip case in tests/test_contract_components.py::CONVERTER_CASES"
    )
    for target, to_upstream in CONVERTER_CASES[entry.name]:
        with torch.device("meta"):
            if target.startswith("timm:"):
                assert entry.meta.get("target") == "backbone"
                cfg, own = None, timm.create_model(target[len("timm:"):]).state_dict()
            else:
                cfg = get_recipe(target, registry=_REGISTRY)
                own = create_model(cfg, registry=_REGISTRY).state_dict()
            if to_upstream is None:
                import torchvision

                upstream = torchvision.models.mobilenet_v2().state_dict()
            else:
                upstream = to_upstream(own)
        mapped = entry.factory(dict(upstream), cfg)
        assert set(mapped) == set(own), f"{entry.name} on {target}: keys differ {sorted(set(mapped) ^ set(own))[:6]}"
        assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)
        if to_upstream is None:  # every upstream tensor placed once, unchanged
            assert sorted(map(id, mapped.values())) == sorted(map(id, upstream.values()))
        else:  # round trip: each key holds the very tensor it started from
            assert all(mapped[k] is own[k] for k in own)


def _detector(entry):
    detect = entry.create(**_kw(entry))
    images = [np.zeros((32, 48, 3), np.uint8), np.full((40, 40, 3), 255, np.uint8)]
    result = detect(images)
    assert len(result) == len(images)
    for (boxes, conf), im in zip(result, images):
        boxes, conf = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(conf, np.float64).reshape(-1)
        assert boxes.shape[0] == conf.shape[0] and ((conf >= 0) & (conf <= 1)).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def _command(entry):
    parser = argparse.ArgumentParser(prog=f"zoo {entry.name}")
    entry.create(parser)
    assert callable(parser.get_default("func"))


CHECKS = {
    "backbone": _backbone,
    "pooling": _pooling,
    "neck": _neck,
    "head": _head,
    "loss": _loss,
    "sampler": _sampler,
    "augmentation": _augmentation,
    "optimizer": _optimizer,
    "param_groups": _param_groups,
    "scheduler": _scheduler,
    "ensemble": _ensemble,
    "metric": _metric,
    "postprocessor": _postprocessor,
    "converter": _converter,
    "detector": _detector,
    "command": _command,
}


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_component_contract(entry):
    torch.manual_seed(0)
    assert entry.kind in CHECKS, f"no contract check for kind '{entry.kind}'"
    CHECKS[entry.kind](entry)


def test_every_kind_has_a_behaviour_check():
    from zoo.registry import KINDS

    assert set(KINDS) == set(CHECKS), "every registry kind is checked for behaviour, not only for being callable"


def test_detector_check_runs_on_a_detector():
    """No detector is registered (no offline weights): the check itself is exercised on a tiny one."""

    class Entry:
        kind, name, meta = "detector", "tiny", {}

        @staticmethod
        def create(**kw):
            return _TinyDetector().create("detector", "tiny")

    _detector(Entry)


def test_every_kind_issue_lists_is_filled():
    kinds = {e.kind for e in ENTRIES}
    assert {"backbone", "neck", "head", "loss", "sampler", "postprocessor"} <= kinds
