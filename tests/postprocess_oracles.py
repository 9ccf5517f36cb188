"""Test oracles: straightforward per-query loops of the post-processing formulas, as the upstream notebooks write them.

``tests/test_postprocess.py`` and ``benchmarks/postprocess.py`` (which imports this file by path)
compare the vectorised post-processors of ``zoo_postprocess`` against them (same outputs, far
slower). Each takes plain numpy arrays and walks queries and neighbours one by one with Python
dicts. Nothing in the pipeline calls them.
"""

from __future__ import annotations

import numpy as np

from zoo.postprocess import NON_LANDMARK


def _argmax_dict(scores: dict[int, float]) -> tuple[int, float]:
    best_l, best_s = NON_LANDMARK, float("-inf")
    for label, s in scores.items():  # insertion order = neighbour order; first max wins
        if s > best_s:
            best_l, best_s = label, s
    return best_l, best_s


def glr2020_fusion_loop(
    rows: np.ndarray, scores: np.ndarray, gallery_labels: np.ndarray, head: np.ndarray | None,
    knn_power: float = 8, head_power: float = 12, head_top_k: int = 5, restrict_to_gallery: bool = True,
    combine: str = "multiply",
) -> tuple[np.ndarray, np.ndarray]:
    """GLR2020 3rd place notebook loop: ``score[lid] += cos**p_knn * classify_dict.get(lid, 1e-8)**p_head``."""
    present = set(int(x) for x in gallery_labels)
    labels_out = np.full(rows.shape[0], NON_LANDMARK, dtype=np.int64)
    conf_out = np.zeros(rows.shape[0])
    for q in range(rows.shape[0]):
        classify: dict[int, float] = {}
        if head is not None:
            h = [float(head[q, c]) if (c in present or not restrict_to_gallery) else float(head[q, c]) - 1.0
                 for c in range(head.shape[1])]
            top = sorted(range(len(h)), key=lambda c: -h[c])[:head_top_k]
            classify = {c: h[c] for c in top}
        score: dict[int, float] = {}
        for j in range(rows.shape[1]):
            r = int(rows[q, j])
            if r < 0:
                continue
            lid = int(gallery_labels[r])
            cos = float(scores[q, j]) ** knn_power
            if head is None:
                score[lid] = score.get(lid, 0.0) + cos
            elif combine == "multiply":
                score[lid] = score.get(lid, 0.0) + cos * classify.get(lid, 1e-8) ** head_power
            else:
                score[lid] = score.get(lid, 0.0) + cos
        if head is not None and combine == "add":
            score = {lid: s + classify.get(lid, 1e-8) ** head_power for lid, s in score.items()}
        if score:
            labels_out[q], conf_out[q] = _argmax_dict(score)
    return labels_out, conf_out


def _top3_label_sim(rows, scores, train_labels, label_rule, similarity):
    votes: dict[int, float] = {}
    cos = []
    labs = []
    for r, s in zip(rows, scores):
        if r < 0:
            continue
        lab = int(train_labels[int(r)])
        votes[lab] = votes.get(lab, 0.0) + float(s)
        cos.append(float(s))
        labs.append(lab)
    if not cos:
        return None, 0.0
    label = _argmax_dict(votes)[0] if label_rule == "vote" else labs[0]
    if similarity == "mean":
        sim = sum(cos) / len(cos)
    elif similarity == "max":
        sim = cos[0]
    else:
        same = [c for c, lab in zip(cos, labs) if lab == label]
        sim = sum(same) / len(same)
    return label, sim


def glr2021_rerank_loop(
    query_index: list[tuple[np.ndarray, np.ndarray]],
    query_train: list[tuple[np.ndarray, np.ndarray]],
    index_train: list[tuple[np.ndarray, np.ndarray]],
    train_labels: np.ndarray, top_k: int = 750, output_k: int = 100, down_weight: float = 0.1,
    label_rule: str = "vote", similarity: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """GLR2021 1st place retrieval re-ranking, one query at a time (lists are ``(rows, scores)`` per model)."""
    n_q = query_index[0][0].shape[0]
    index_info = []
    for rows, scores in index_train:
        index_info.append([_top3_label_sim(rows[i], scores[i], train_labels, label_rule, similarity) for i in range(rows.shape[0])])
    out_r = np.full((n_q, output_k), -1, dtype=np.int64)
    out_s = np.full((n_q, output_k), -np.inf)
    for q in range(n_q):
        total: dict[int, float] = {}
        for m, (rows, scores) in enumerate(query_index):
            q_label, _ = _top3_label_sim(query_train[m][0][q], query_train[m][1][q], train_labels, label_rule, similarity)
            for j in range(min(top_k, rows.shape[1])):
                i = int(rows[q, j])
                if i < 0:
                    continue
                i_label, t = index_info[m][i]
                s = float(scores[q, j])
                s = s + t if (q_label is not None and i_label == q_label) else s - down_weight * t
                total[i] = total.get(i, 0.0) + s
        best = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:output_k]
        for c, (i, s) in enumerate(best):
            out_r[q, c], out_s[q, c] = i, s
    return out_r, out_s


def henkel_singer_loop(
    query_gallery: list[tuple[np.ndarray, np.ndarray]],
    gallery_non_landmark: list[tuple[np.ndarray, np.ndarray]],
    query_non_landmark: tuple[np.ndarray, np.ndarray] | None,
    gallery_labels: np.ndarray, top_k: int = 3, train_penalty_k: int = 5, test_penalty_k: int = 10,
    test_penalty_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Henkel & Singer 2020 ranking, one query at a time (lists are ``(rows, scores)`` per model)."""
    penalties = []
    for rows, scores in gallery_non_landmark:
        pen = []
        for t in range(rows.shape[0]):
            vals = [float(s) for r, s in zip(rows[t][:train_penalty_k], scores[t][:train_penalty_k]) if r >= 0]
            pen.append(sum(vals) / len(vals) if vals else 0.0)
        penalties.append(pen)
    n_q = query_gallery[0][0].shape[0]
    labels_out = np.full(n_q, NON_LANDMARK, dtype=np.int64)
    conf_out = np.zeros(n_q)
    for q in range(n_q):
        score: dict[int, float] = {}
        for m, (rows, scores) in enumerate(query_gallery):
            cands = []
            for j in range(rows.shape[1]):
                r = int(rows[q, j])
                if r < 0:
                    continue
                cands.append((min(max(float(scores[q, j]), 0.0), 1.0) - penalties[m][r], j, int(gallery_labels[r])))
            cands.sort(key=lambda c: (-c[0], c[1]))
            for a, _, lab in cands[:top_k]:
                score[lab] = score.get(lab, 0.0) + a
        if not score:
            continue
        label, conf = _argmax_dict(score)
        if query_non_landmark is not None and test_penalty_weight:
            rows, scores = query_non_landmark
            vals = [float(s) for r, s in zip(rows[q][:test_penalty_k], scores[q][:test_penalty_k]) if r >= 0]
            conf -= test_penalty_weight * (sum(vals) / len(vals) if vals else 0.0)
        labels_out[q], conf_out[q] = label, conf
    return labels_out, conf_out


def frequency_rule_loop(labels: np.ndarray, max_count: int = 20) -> np.ndarray:
    counts: dict[int, int] = {}
    for lab in labels:
        if lab != NON_LANDMARK:
            counts[int(lab)] = counts.get(int(lab), 0) + 1
    return np.array([NON_LANDMARK if lab != NON_LANDMARK and counts[int(lab)] > max_count else lab for lab in labels], dtype=np.int64)


def softmax_topk_loop(logits: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """GLR2019 softmax top-k, one query at a time: top-1 label and its probability."""
    import math

    labels_out = np.zeros(logits.shape[0], dtype=np.int64)
    conf_out = np.zeros(logits.shape[0])
    for q in range(logits.shape[0]):
        row = [float(v) for v in logits[q]]
        m = max(row)
        exps = [math.exp(v - m) for v in row]
        total = sum(exps)
        top = sorted(range(len(row)), key=lambda c: (-exps[c], c))[:k]
        labels_out[q], conf_out[q] = top[0], exps[top[0]] / total
    return labels_out, conf_out
