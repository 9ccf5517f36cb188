"""``zoo evaluate`` and the Kaggle CSV readers/writers on hand-made files and the real labels.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.inference import submission as sub
from zoo.postprocess import Neighbours, Recognition


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_evaluate_recognition_table_and_json(tmp_path, capsys):
    pred = _write(tmp_path / "pred.csv", "id,landmarks\na,1 0.9\nb,2 0.8\nc,4 0.7\nd,5 0.95\ne,\n")
    truth = _write(tmp_path / "truth.csv", "id,landmarks,Usage\na,1,Public\nb,3,Public\nc,4 9,Private\nd,,Private\ne,7,Private\n")
    assert main(["evaluate", pred, truth, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # see test_metrics: q3 is a wrong guess on a non-landmark; e has no prediction but a landmark truth
    assert out["metrics"]["gap"] == pytest.approx((1 / 2 + 2 / 4) / 4)
    assert out["metrics"]["gap_landmarks_only"] == pytest.approx((1 + 2 / 3) / 4)
    assert out["counts"] == {"queries": 5, "landmark_queries": 4, "predictions": 4, "correct": 2,
                             "missing_rows": 0, "extra_rows": 0}
    assert main(["evaluate", pred, truth, "--usage", "Private"]) == 0
    table = capsys.readouterr().out
    assert "gap_landmarks_only" in table and "0.2500" in table  # c right after d wrong: (1/2) / 2


def test_evaluate_retrieval_with_missing_rows(tmp_path, capsys):
    pred = _write(tmp_path / "pred.csv", "id,images\nq1,a b c d e\nq2,c\n")
    truth = _write(tmp_path / "truth.csv", "id,images\nq1,b d z\nq2,c\nq3,a\nq4,\n")
    assert main(["evaluate", pred, truth, "--json", "--recall-k", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)
    # q1: 1/3, q2: 1, q3 missing row: 0; q4 has no relevant ids and is left out
    assert out["metrics"]["map@100"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert out["metrics"]["mp@5"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert out["metrics"]["recall@1"] == pytest.approx(1 / 3)
    assert out["metrics"]["recall@2"] == pytest.approx(2 / 3)
    assert out["counts"]["missing_rows"] == 2 and out["counts"]["scored_queries"] == 3


def test_evaluate_errors_name_the_problem(tmp_path, capsys):
    pred = _write(tmp_path / "pred.csv", "id,images\nq1,a\n")
    rec_truth = _write(tmp_path / "truth.csv", "id,landmarks\nq1,1\n")
    bad = _write(tmp_path / "bad.csv", "foo,bar\n1,2\n")
    assert main(["evaluate", pred, rec_truth]) == 1  # a user error (exit 2 is for usage errors)
    assert "recognition truth" in capsys.readouterr().err
    assert main(["evaluate", bad, rec_truth]) == 1
    assert "neither" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "mAP@k" in capsys.readouterr().out


@pytest.mark.realdata
def test_evaluate_all_vs_all_on_instance_labels(tmp_path, capsys, instance_eval):
    paths, inst = sub.read_instance_labels(instance_eval / "labels.csv")
    groups: dict[str, list[str]] = {}
    for p, g in zip(paths, inst):
        groups.setdefault(g, []).append(p)
    # perfect ranking (self first, as an all-vs-all search returns it) then one wrong image
    rankings = []
    for p, g in zip(paths, inst):
        wrong = next(o for o in paths if o not in groups[g])
        rankings.append([p] + [o for o in groups[g] if o != p] + [wrong])
    pred = tmp_path / "pred.csv"
    sub.write_retrieval(pred, paths, rankings)
    assert main(["evaluate", str(pred), str(instance_eval / "labels.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["map@100"] == pytest.approx(1.0)
    assert out["counts"]["queries"] == len(paths)
    # keeping the query itself pushes every relevant image down one rank
    assert main(["evaluate", str(pred), str(instance_eval / "labels.csv"), "--json", "--keep-self"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["metrics"]["map@100"] < 0.9 and kept["metrics"]["recall@1"] == 0.0


def test_writers_round_trip_and_are_atomic(tmp_path):
    rec = Recognition(np.array([2, -1, 0]), np.array([0.5, 0.1, 1e-30]))
    path = tmp_path / "out" / "sub.csv"
    sub.write_recognition_result(path, ["x", "y", "z"], rec, label_names=["l0", "l1", "l2"])
    rows = list(csv.reader(open(path)))
    assert rows == [["id", "landmarks"], ["x", "l2 0.5"], ["y", ""], ["z", "l0 1e-30"]]
    back = sub.read_recognition_predictions(path)
    assert back.labels == ["l2", None, "l0"] and back.confidences[2] == pytest.approx(1e-30)
    sub.write_ranking_result(tmp_path / "r.csv", ["q"], Neighbours(np.array([[1, 0, -1]]), np.zeros((1, 3))), ["g0", "g1"])
    assert sub.read_retrieval(tmp_path / "r.csv") == {"q": ["g1", "g0"]}
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_reader_rejects_malformed_rows(tmp_path):
    bad = _write(tmp_path / "p.csv", "id,landmarks\na,1 2 3\n")
    with pytest.raises(sub.SubmissionError, match="'label score'"):
        sub.read_recognition_predictions(bad)
    dup = _write(tmp_path / "d.csv", "id,images\na,x\na,y\n")
    with pytest.raises(sub.SubmissionError, match="more than once"):
        sub.read_retrieval(dup)
