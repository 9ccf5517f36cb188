"""``Selection.summary`` for a run stopped inside its first epoch (``zoo train --max-steps``): the
selection then knows only the step, and the summary line must still be written (it raised
``KeyError: 'stage'`` and turned a finished smoke run into an internal error)."""

from zoo.train.selection import Selection


def test_summary_of_a_run_stopped_inside_an_epoch_names_the_step():
    sel = Selection(None, best={"global_step": 2, "value": None}, last={"global_step": 2})
    assert sel.summary() == "selected the last epoch, the state at step 2 (inside an epoch)"


def test_summary_of_a_completed_epoch_names_stage_epoch_and_step():
    sel = Selection("map@100")
    assert sel.update({"stage": 0, "epoch": 3, "global_step": 30, "map@100": 0.5})
    assert sel.summary() == "selected stage 0 epoch 3 (step 30): best map@100 = 0.5000 (max)"
