"""Kaggle submission and ground-truth CSVs: readers, atomic writers, and alignment into metric inputs.

Formats (Google Landmark Recognition / Retrieval, GUIE):

* recognition predictions: ``id,landmarks`` with ``landmarks = "label score"``; empty = no prediction
  (non-landmark).
* retrieval predictions: ``id,images`` with space-separated index ids, best first.
* recognition truth: ``id,landmarks`` with space-separated allowed labels; empty = non-landmark.
  Extra columns (Kaggle's ``Usage``) are allowed and can filter rows.
* retrieval truth: ``id,images`` with the space-separated relevant index ids.
* instance labels (``labels.csv`` of the instance-eval set: ``path,instance,...``): all-vs-all
  retrieval truth: each image (id = ``path``) is a query whose relevant ids are the other images of
  its ``instance``; as recognition truth the label of ``path`` is its ``instance``.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo import atomic
from zoo.data.labels import LabelMap
from zoo.postprocess import NON_LANDMARK, Neighbours, Recognition
from zoo.registry import ZooError

KINDS = ("recognition", "retrieval", "instances")


class SubmissionError(ZooError):
    """A CSV that is not in one of the Kaggle formats (or does not match its counterpart)."""


def _open_rows(path: str | Path) -> tuple[list[str], Iterable[list[str]], object]:
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path} does not exist")
    f = open(path, newline="")
    reader = csv.reader(f)
    header = next(reader, None)
    if not header:
        f.close()
        raise SubmissionError(f"{path} is empty; expected a header such as 'id,landmarks' or 'id,images'")
    return [h.strip() for h in header], reader, f


def detect_kind(path: str | Path) -> str:
    """``recognition`` (``id,landmarks``), ``retrieval`` (``id,images``) or ``instances`` (``path,instance``)."""
    header, _, f = _open_rows(path)
    f.close()  # type: ignore[attr-defined]
    cols = [h.lower() for h in header]
    if "path" in cols and "instance" in cols:
        return "instances"
    if len(cols) >= 2 and cols[0] == "id" and cols[1] == "landmarks":
        return "recognition"
    if len(cols) >= 2 and cols[0] == "id" and cols[1] == "images":
        return "retrieval"
    raise SubmissionError(
        f"{path}: header {header} is neither 'id,landmarks' (recognition), 'id,images' (retrieval) nor "
        "'path,instance,...' (instance labels)"
    )


def _read_table(path: str | Path, second: str, usage: str | None = None) -> tuple[list[str], list[str]]:
    header, reader, f = _open_rows(path)
    try:
        cols = [h.lower() for h in header]
        if len(cols) < 2 or cols[0] != "id" or cols[1] != second:
            raise SubmissionError(f"{path}: expected the header 'id,{second}', got {','.join(header)}")
        use_col = cols.index("usage") if usage is not None and "usage" in cols else None
        if usage is not None and use_col is None:
            raise SubmissionError(f"{path}: --usage {usage} given but the file has no 'Usage' column")
        ids, values = [], []
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if use_col is not None and (len(row) <= use_col or row[use_col].strip().lower() != usage.lower()):  # type: ignore[union-attr]
                continue
            ids.append(row[0].strip())
            values.append(row[1].strip() if len(row) > 1 else "")
        return ids, values
    finally:
        f.close()  # type: ignore[attr-defined]


@dataclass
class RecognitionPredictions:
    ids: list[str]
    labels: list[str | None]  # None = no prediction
    confidences: np.ndarray  # float64


def read_recognition_predictions(path: str | Path) -> RecognitionPredictions:
    ids, cells = _read_table(path, "landmarks")
    labels: list[str | None] = []
    conf = np.zeros(len(ids), dtype=np.float64)
    for i, cell in enumerate(cells):
        parts = cell.split()
        if not parts:
            labels.append(None)
            continue
        if len(parts) != 2:
            raise SubmissionError(
                f"{path}: row for id '{ids[i]}' has landmarks '{cell}'; expected 'label score' (one prediction) or empty"
            )
        labels.append(parts[0])
        try:
            conf[i] = float(parts[1])
        except ValueError:
            raise SubmissionError(f"{path}: id '{ids[i]}': confidence '{parts[1]}' is not a number") from None
    _check_unique(ids, path)
    return RecognitionPredictions(ids, labels, conf)


def read_recognition_truth(path: str | Path, usage: str | None = None) -> dict[str, list[str]]:
    """``id -> allowed labels`` (empty list = non-landmark); ``labels.csv`` gives ``path -> [instance]``."""
    if detect_kind(path) == "instances":
        ids, groups = read_instance_labels(path)
        return {i: [g] for i, g in zip(ids, groups)}
    ids, cells = _read_table(path, "landmarks", usage)
    _check_unique(ids, path)
    return {i: c.split() for i, c in zip(ids, cells)}


def read_retrieval(path: str | Path, usage: str | None = None) -> dict[str, list[str]]:
    """``id -> space-separated ids`` of a retrieval prediction or truth file (insertion order kept)."""
    ids, cells = _read_table(path, "images", usage)
    _check_unique(ids, path)
    return {i: c.split() for i, c in zip(ids, cells)}


def read_instance_labels(path: str | Path) -> tuple[list[str], list[str]]:
    """``(paths, instances)`` of an instance-eval ``labels.csv``."""
    header, reader, f = _open_rows(path)
    try:
        cols = [h.lower() for h in header]
        if "path" not in cols or "instance" not in cols:
            raise SubmissionError(f"{path}: expected the columns 'path' and 'instance', got {','.join(header)}")
        pi, ii = cols.index("path"), cols.index("instance")
        paths, inst = [], []
        for row in reader:
            if not row:
                continue
            paths.append(row[pi].strip())
            inst.append(row[ii].strip())
    finally:
        f.close()  # type: ignore[attr-defined]
    _check_unique(paths, path)
    return paths, inst


def instance_retrieval_truth(paths: Sequence[str], instances: Sequence[str]) -> dict[str, list[str]]:
    """All-vs-all: each path's relevant ids are the other paths of its instance."""
    groups: dict[str, list[str]] = {}
    for p, g in zip(paths, instances):
        groups.setdefault(g, []).append(p)
    return {p: [o for o in groups[g] if o != p] for p, g in zip(paths, instances)}


def _check_unique(ids: Sequence[str], path: str | Path) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise SubmissionError(f"{path}: id '{dup}' appears more than once")


# ------------------------------------------------------------------ writers (atomic)
def write_recognition(
    path: str | Path,
    ids: Sequence[str],
    labels: Sequence[str | None] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    label_names: Sequence[str] | None = None,
) -> None:
    """``id,landmarks`` rows; a ``None``/``NON_LANDMARK`` label writes an empty cell.

    ``labels`` are strings, or int label ids mapped through ``label_names`` (or printed as ints).
    """
    if not (len(ids) == len(labels) == len(confidences)):
        raise SubmissionError(f"write_recognition: {len(ids)} ids, {len(labels)} labels, {len(confidences)} confidences")
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "landmarks"])
        for qid, lab, conf in zip(ids, labels, confidences):
            if lab is None or (not isinstance(lab, str) and int(lab) == NON_LANDMARK):
                w.writerow([qid, ""])
                continue
            name = lab if isinstance(lab, str) else (label_names[int(lab)] if label_names is not None else str(int(lab)))
            w.writerow([qid, f"{name} {float(conf):.6g}"])


def write_recognition_result(
    path: str | Path, ids: Sequence[str], rec: Recognition, label_names: Sequence[str] | None = None
) -> None:
    """Write a :class:`Recognition` (int labels through ``label_names``)."""
    write_recognition(path, ids, rec.labels, rec.confidences, label_names)


def write_retrieval(path: str | Path, ids: Sequence[str], ranked: Sequence[Sequence[str]]) -> None:
    """``id,images`` rows of space-separated ids, best first."""
    if len(ids) != len(ranked):
        raise SubmissionError(f"write_retrieval: {len(ids)} ids but {len(ranked)} rankings")
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "images"])
        for qid, row in zip(ids, ranked):
            w.writerow([qid, " ".join(row)])


def write_ranking_result(path: str | Path, ids: Sequence[str], ranking: Neighbours, gallery_ids: Sequence[str]) -> None:
    """Write a :data:`~zoo.postprocess.Ranking` (gallery rows -> ids, padding dropped)."""
    write_retrieval(path, ids, [[gallery_ids[r] for r in row if r >= 0] for row in ranking.indices])


# ------------------------------------------------------------------ alignment into metric inputs
@dataclass
class AlignedRecognition:
    pred: np.ndarray  # int64 Q, -1 = no prediction
    conf: np.ndarray  # float64 Q
    truth: np.ndarray  # int64 Q x T padded
    missing: int  # truth ids without a prediction row
    extra: int  # prediction ids not in the truth


def align_recognition(pred: RecognitionPredictions, truth: dict[str, list[str]]) -> AlignedRecognition:
    """Predictions reordered onto the truth ids; a missing row is "no prediction"."""
    row = {i: n for n, i in enumerate(pred.ids)}
    ids = list(truth)
    vocab = LabelMap.from_labels(
        itertools.chain(pred.labels, itertools.chain.from_iterable(truth[i] for i in ids)), allow_empty=True
    )
    p = np.full(len(ids), NON_LANDMARK, dtype=np.int64)
    c = np.zeros(len(ids))
    missing = 0
    for q, qid in enumerate(ids):
        n = row.get(qid)
        if n is None:
            missing += 1
            continue
        lab = pred.labels[n]
        if lab is not None:
            p[q] = vocab.index(lab)
            c[q] = pred.confidences[n]
    t = vocab.encode_lists([truth[i] for i in ids])
    extra = len(set(pred.ids) - set(truth))
    return AlignedRecognition(p, c, t, missing, extra)


@dataclass
class AlignedRetrieval:
    ranked: np.ndarray  # int64 Q x K padded
    relevant: np.ndarray  # int64 Q x R padded
    missing: int
    extra: int


def align_retrieval(
    pred: dict[str, list[str]], truth: dict[str, list[str]], *, drop_self: bool = False, max_k: int | None = None
) -> AlignedRetrieval:
    """Rankings reordered onto the truth ids; ``drop_self`` removes each query's own id from its ranking."""
    ids = list(truth)
    rankings = []
    missing = 0
    for qid in ids:
        r = pred.get(qid)
        if r is None:
            missing += 1
            r = []
        if drop_self:
            r = [x for x in r if x != qid]
        rankings.append(r[:max_k] if max_k else r)
    relevant_ids = [truth[i] for i in ids]
    vocab = LabelMap.from_labels(
        itertools.chain(itertools.chain.from_iterable(rankings), itertools.chain.from_iterable(relevant_ids)),
        allow_empty=True,
    )
    ranked = vocab.encode_lists(rankings)
    relevant = vocab.encode_lists(relevant_ids)
    extra = len(set(pred) - set(truth))
    return AlignedRetrieval(ranked, relevant, missing, extra)
