"""Exact numpy search and the one self-match removal (zoo.inference.search)."""

from __future__ import annotations

import numpy as np

from zoo.inference.search import NOT_IN_SET, drop_self, exact_search, own_rows


def test_exact_search_ip_and_l2_with_padding():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    g = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    s, r = exact_search(q, g, 4, "ip")
    assert r.tolist() == [[1, 0, 2, -1], [2, 0, 1, -1]]
    assert np.isneginf(s[:, 3]).all() and s[0, 0] == 1.0
    s2, r2 = exact_search(q, g, 2, "l2")
    assert r2.tolist() == [[1, 0], [2, 0]]
    np.testing.assert_allclose(s2, [[0.0, 0.8], [0.0, 0.4]], atol=1e-6)  # squared distances, ascending


def test_drop_self_keeps_order_and_pads():
    rows = np.array([[0, 2, 1], [2, 1, -1], [3, 2, 1]])
    scores = np.array([[1.0, 0.9, 0.8], [0.7, 0.5, -np.inf], [0.9, 0.8, 0.7]], dtype=np.float32)
    own = own_rows(["a", "b", "x"], ["a", "b", "c", "d"])
    assert own.tolist() == [0, 1, NOT_IN_SET]
    s, r = drop_self(scores, rows, own, 2)
    assert r.tolist() == [[2, 1], [2, -1], [3, 2]]  # own row gone, order kept; "x" is only cut
    assert s.dtype == np.float32 and s[0].tolist() == [np.float32(0.9), np.float32(0.8)] and np.isneginf(s[1, 1])
    s3, r3 = drop_self(scores, rows, np.arange(3), 4)  # more columns than given: padded
    assert r3.tolist() == [[2, 1, -1, -1], [2, -1, -1, -1], [3, 1, -1, -1]]
    assert np.isneginf(s3[:, 3]).all()
