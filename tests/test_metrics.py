"""Metrics against hand-worked examples and direct per-query definitions."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_metrics.gap import gap
from zoo_metrics.padded import pad_lists
from zoo_metrics.ranking import average_precision_at_k, map_at_k, mp_at_k, recall_at_k, relevance

# ---------------------------------------------------------------- GAP
# q0 right (0.9), q1 wrong (0.8), q2 right (0.7), q3 predicts a landmark on a non-landmark image (0.95)
PRED = np.array([1, 2, 4, 5])
CONF = np.array([0.9, 0.8, 0.7, 0.95])
TRUE = np.array([1, 3, 4, -1])


def test_gap_counts_wrong_guesses_on_non_landmarks():
    # order: q3 (wrong), q0 (P=1/2), q1 (wrong), q2 (P=2/4); M = 3 landmark queries
    assert gap(PRED, CONF, TRUE) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_gap_ignoring_non_landmark_queries():
    # q3 dropped: q0 (P=1), q1 wrong, q2 (P=2/3)
    assert gap(PRED, CONF, TRUE, ignore_non_landmarks=True) == pytest.approx((1 + 2 / 3) / 3)


def test_gap_non_landmark_prediction_is_not_ranked_but_its_query_counts():
    pred = np.r_[PRED, -1]
    conf = np.r_[CONF, 0.99]
    true = np.r_[TRUE, 6]
    assert gap(pred, conf, true) == pytest.approx((1 / 2 + 2 / 4) / 4)
    # a correct "non-landmark" on a non-landmark query neither helps nor hurts
    assert gap(np.r_[PRED, -1], np.r_[CONF, 0.99], np.r_[TRUE, -1]) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_gap_accepts_several_allowed_labels_per_query():
    true = [[1], [3, 2], [4], []]  # q1's label 2 is now allowed
    assert gap(PRED, CONF, true) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert gap(PRED, CONF, pad_lists(true)) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)


def test_gap_edge_cases():
    assert gap([1, 2], [0.5, 0.4], [-1, -1]) == 0.0
    assert gap([1, 2], [0.5, 0.4], [1, 2]) == 1.0
    assert gap([-1, -1], [0.5, 0.4], [1, 2]) == 0.0
    with pytest.raises(ValueError, match="must match"):
        gap([1, 2], [0.5], [1, 2])


def _gap_loop(pred, conf, true, ignore):
    """psinger/top-100 array version, written as a loop."""
    order = np.argsort(-np.asarray(conf), kind="stable")
    m = sum(t >= 0 for t in true)
    i = correct = 0
    total = 0.0
    for k in order:
        if pred[k] == -1:
            continue
        if ignore and true[k] == -1:
            continue
        i += 1
        if pred[k] == true[k]:
            correct += 1
            total += correct / i
    return total / m


@pytest.mark.parametrize("ignore", [False, True])
def test_gap_matches_reference_loop(ignore):
    rng = np.random.default_rng(0)
    true = rng.integers(-1, 8, 500)
    pred = np.where(rng.random(500) < 0.5, true, rng.integers(-1, 8, 500))
    conf = rng.random(500)
    assert gap(pred, conf, true, ignore_non_landmarks=ignore) == pytest.approx(_gap_loop(pred, conf, true, ignore))


# ---------------------------------------------------------------- ranking metrics
A, B, C, D, E, Z = range(6)


def test_map_hand_examples():
    ranked = [[A, B, C, D, E]]
    # relevant b, d, z: hits at 2 and 4 -> (1/2 + 2/4) / min(3, 5)
    assert map_at_k(ranked, [[B, D, Z]], k=5) == pytest.approx(1 / 3)
    # fewer relevant than k: one relevant item at rank 3 -> (1/3) / 1
    assert map_at_k(ranked, [[C]], k=5) == pytest.approx(1 / 3)
    assert map_at_k(ranked, [[A]], k=100) == 1.0
    # cut at k=2: only the hit at rank 2 -> (1/2) / min(3, 2)
    assert map_at_k(ranked, [[B, D, Z]], k=2) == pytest.approx(0.25)
    # duplicates count once, padding never
    assert map_at_k([[B, B, -1, D]], [[B, D]], k=100) == pytest.approx((1 + 2 / 4) / 2)


def test_map_mean_over_queries_and_empty_queries():
    ranked = [[A, B, C], [C, B, A], [A, B, C]]
    relevant = [[A], [A], []]
    assert map_at_k(ranked, relevant, k=100) == pytest.approx((1 + 1 / 3) / 2)
    assert map_at_k(ranked, relevant, k=100, skip_empty=False) == pytest.approx((1 + 1 / 3) / 3)
    ap, n_rel = average_precision_at_k(ranked, relevant, 100)
    np.testing.assert_allclose(ap, [1, 1 / 3, 0])
    np.testing.assert_array_equal(n_rel, [1, 1, 0])


def test_mp_at_5_hand_examples():
    ranked = [[A, B, C, D, E]]
    # 3 relevant: only the first min(3, 5) = 3 positions count -> 1 hit / 3
    assert mp_at_k(ranked, [[B, D, Z]], k=5) == pytest.approx(1 / 3)
    # many relevant: 4 hits among 5
    assert mp_at_k(ranked, [[A, B, C, D, 10, 11, 12]], k=5) == pytest.approx(4 / 5)
    # one relevant at rank 1 -> 1; at rank 2 -> 0 (only position 1 counts)
    assert mp_at_k(ranked, [[A]], k=5) == 1.0
    assert mp_at_k(ranked, [[B]], k=5) == 0.0
    # shorter rankings than k are padded
    assert mp_at_k([[A, -1]], [[A, B, C, D, E, Z]], k=5) == pytest.approx(1 / 5)


def test_recall_at_k():
    ranked = [[A, B, C], [C, B, A], [D, E, Z]]
    relevant = [[B], [A], [A]]
    assert recall_at_k(ranked, relevant, k=1) == 0.0
    assert recall_at_k(ranked, relevant, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, k=3) == pytest.approx(2 / 3)


def _ap_loop(ranked, relevant, k):
    rel = set(int(x) for x in relevant if x >= 0)
    if not rel:
        return None
    seen, hits, total = set(), 0, 0.0
    for i, x in enumerate(ranked[:k], 1):
        if x in rel and x not in seen:
            hits += 1
            total += hits / i
        seen.add(x)
    return total / min(len(rel), k)


def test_map_matches_direct_definition_on_random_data(monkeypatch):
    import zoo_metrics.ranking as ranking

    monkeypatch.setattr(ranking, "CHUNK", 37)  # exercise the chunking
    rng = np.random.default_rng(1)
    ranked = rng.integers(-1, 60, (300, 20))
    relevant = [rng.choice(60, size=rng.integers(0, 12), replace=False) for _ in range(300)]
    want = [a for a in (_ap_loop(list(r), rel, 10) for r, rel in zip(ranked, relevant)) if a is not None]
    assert map_at_k(ranked, relevant, k=10) == pytest.approx(np.mean(want))
    hits, n_rel = relevance(ranked, relevant, 10)
    assert hits.shape == (300, 10)
    np.testing.assert_array_equal(n_rel, [len(r) for r in relevant])


def test_registered_metrics(registry):
    m = registry.create("metric", "map_at_k")
    assert m([[A, B, C, D, E]], [[B, D, Z]]) == pytest.approx(1 / 3)
    assert registry.create("metric", "map_at_k", k=2)([[A, B, C, D, E]], [[B, D, Z]]) == pytest.approx(0.25)
    assert registry.create("metric", "mp_at_k")([[A, B, C, D, E]], [[B, D, Z]]) == pytest.approx(1 / 3)
    assert registry.create("metric", "gap")(PRED, CONF, TRUE) == pytest.approx(1 / 3)
    assert registry.create("metric", "gap_landmarks_only")(PRED, CONF, TRUE) == pytest.approx(5 / 9)
    assert registry.get("metric", "gap").meta["input"] == "recognition"
    assert registry.get("metric", "recall_at_k").meta["input"] == "ranking"
