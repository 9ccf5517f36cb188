"""Sampler guarantees: disjoint DDP shards, seeded epochs, resume, class balance, re-balancer rules."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from zoo.data.images import ImageRecord
from zoo.plugins import load_registry


@pytest.fixture(scope="module")
def reg():
    return load_registry(strict=True, only=("samplers",))


def _make(reg, name, labels, **kw):
    return reg.create("sampler", name, labels, **kw)


@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_shards_are_disjoint_and_cover(reg, drop_last):
    labels = np.arange(103) % 7
    shards = []
    for rank in range(4):
        s = _make(reg, "distributed", labels, num_replicas=4, rank=rank, seed=5, drop_last=drop_last)
        s.set_epoch(3)
        idx = list(s)
        assert len(idx) == len(s)
        shards.append(idx)
        ref = DistributedSampler(range(103), num_replicas=4, rank=rank, seed=5, drop_last=drop_last)
        ref.set_epoch(3)
        assert idx == list(ref), "same order and padding as torch DistributedSampler"
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(flat) == len(set(flat)) == 100  # disjoint, 3 dropped
    else:
        assert set(flat) == set(range(103)) and len(flat) == 104  # covers, one padded repeat
        assert sum(c > 1 for c in Counter(flat).values()) == 1


def test_set_epoch_changes_order_deterministically(reg):
    labels = np.zeros(50, dtype=np.int64)
    a = _make(reg, "distributed", labels, seed=1)
    b = _make(reg, "distributed", labels, seed=1)
    c = _make(reg, "distributed", labels, seed=2)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        c.set_epoch(epoch)
        oa, ob, oc = list(a), list(b), list(c)
        assert oa == ob and oa != oc and sorted(oa) == list(range(50))
        orders.append(oa)
    assert orders[0] != orders[1] != orders[2]
    a.set_epoch(0)
    assert list(a) == orders[0], "an epoch's order is a pure function of (seed, epoch)"
    ns = _make(reg, "distributed", labels, shuffle=False)
    assert list(ns) == list(range(50))


@pytest.mark.parametrize("name", ["distributed", "class_balanced"])
def test_state_dict_resume_yields_the_remaining_indices(reg, name):
    labels = np.repeat(np.arange(6), [1, 2, 3, 10, 20, 4])
    s = _make(reg, name, labels, num_replicas=2, rank=1, seed=9)
    s.set_epoch(4)
    full = list(s)
    it = iter(s)
    consumed = [next(it) for _ in range(7)]
    state = s.state_dict()
    assert state == {"epoch": 4, "seed": 9, "consumed": 7}
    fresh = _make(reg, name, labels, num_replicas=2, rank=1, seed=9)
    fresh.load_state_dict(state)
    fresh.set_epoch(4)  # the trainer calls set_epoch again: the skip is kept for the same epoch
    assert len(fresh) == len(full) - 7
    rest = list(fresh)
    assert consumed + rest == full
    assert len(fresh) == len(full) and list(fresh) == full, "the next iteration is whole again"
    # an explicit consumed count (DataLoader prefetch) wins over the yielded count
    assert s.state_dict(consumed=3)["consumed"] == 3
    other = _make(reg, name, labels, num_replicas=2, rank=1, seed=10)
    with pytest.raises(Exception, match="same seed"):
        other.load_state_dict(state)
    moved = _make(reg, name, labels, num_replicas=2, rank=1, seed=9)
    moved.load_state_dict(state)
    moved.set_epoch(5)  # a different epoch drops the skip
    assert len(moved) == len(full)


def test_class_balanced_frequencies_and_shards(reg):
    counts = [2, 5, 40, 400]
    labels = np.repeat(np.arange(4), counts)
    s = _make(reg, "class_balanced", labels, seed=0, num_samples=20000)
    s.set_epoch(0)
    freq = np.bincount(labels[list(s)], minlength=4) / 20000
    assert np.allclose(freq, 0.25, atol=0.02), freq
    # power=0 keeps the natural frequencies
    p0 = _make(reg, "class_balanced", labels, seed=0, num_samples=20000, power=0.0)
    f0 = np.bincount(labels[list(p0)], minlength=4) / 20000
    assert np.allclose(f0, np.array(counts) / sum(counts), atol=0.02)
    # ranks take disjoint positions of one shared draw
    per_rank = []
    for rank in range(3):
        r = _make(reg, "class_balanced", labels, seed=0, num_replicas=3, rank=rank, num_samples=30)
        r.set_epoch(2)
        per_rank.append(list(r))
    whole = _make(reg, "class_balanced", labels, seed=0, num_samples=30)
    whole.set_epoch(2)
    order = list(whole)
    for rank in range(3):
        assert per_rank[rank] == order[rank::3]
    # unknown labels (-1) are never drawn
    neg = _make(reg, "class_balanced", np.array([-1, -1, 0, 1]), seed=0, num_samples=200)
    assert not {0, 1} & set(neg)


def _records(sizes: dict[str, int]) -> list[ImageRecord]:
    return [ImageRecord(f"{lab}_{i}", f"{lab}_{i}.jpg", lab) for lab, n in sizes.items() for i in range(n)]


def test_guie_rebalance_rules(reg):
    sizes = {"tiny": 2, "three": 3, "seven": 7, "twenty_five": 25, "huge": 150}
    recs = _records(sizes)
    fn = reg.create("sampler", "guie_rebalance")
    assert reg.get("sampler", "guie_rebalance").meta["role"] == "resample"
    out = fn(recs, seed=0)
    c = Counter(r.label for r in out)
    assert "tiny" not in c  # < 3 images dropped
    assert c["three"] == 20 and c["seven"] == 20  # upsampled to 20
    assert c["twenty_five"] == 25  # already >= 20: unchanged
    assert c["huge"] == 100  # capped at 100
    # upsampling repeats the whole group floor(20/n) times + distinct random remainder
    seven = Counter(r.id for r in out if r.label == "seven")
    assert len(seven) == 7 and sorted(seven.values()) == [2] + [3] * 6  # 20 = 2 * 7 + 6 distinct extras
    huge = [r.id for r in out if r.label == "huge"]
    assert len(set(huge)) == 100  # a random subset without repeats
    assert out == fn(recs, seed=0) and out != fn(recs, seed=1)


def test_oversample_min_and_min_class_size(reg):
    recs = _records({"a": 1, "b": 3, "c": 5, "d": 9})
    out = reg.create("sampler", "oversample_min")(recs, seed=0)
    c = Counter(r.label for r in out)
    assert c == {"a": 5, "b": 5, "c": 5, "d": 9}  # up to 5, never down
    assert Counter(r.id for r in out if r.label == "b").most_common(1)[0][1] == 2
    # the recipe spelling (min_per_class) and upstream's (value) build the same rule
    seven = Counter(r.label for r in reg.create("sampler", "oversample_min", min_per_class=7)(recs, seed=0))
    assert seven == Counter(r.label for r in reg.create("sampler", "oversample_min", value=7)(recs, seed=0))
    assert seven == {"a": 7, "b": 7, "c": 7, "d": 9}
    kept = reg.create("sampler", "min_class_size", min_images=5)(recs, seed=0)
    assert {r.label for r in kept} == {"c", "d"} and len(kept) == 14
    with pytest.raises(Exception, match="no class kept"):
        reg.create("sampler", "min_class_size")(recs, seed=0)


def test_samplers_train_with_a_dataloader(reg):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    labels = np.arange(10) % 3
    ds = TensorDataset(torch.arange(10))
    s = _make(reg, "distributed", labels, num_replicas=2, rank=0, seed=0)
    s.set_epoch(1)
    got = torch.cat([b[0] for b in DataLoader(ds, batch_size=2, sampler=s)]).tolist()
    assert got == list(s) and len(got) == 5
