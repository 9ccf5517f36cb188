"""The selection line of a run cut short mid-epoch (``--max-steps``) names the step it ended at."""

from zoo.train.selection import Selection


def test_summary_of_a_run_cut_short_mid_epoch():
    sel = Selection(None)
    sel.update({"kind": "val", "global_step": 2})  # the final record of a --max-steps run: no stage/epoch
    assert sel.summary() == "selected the last epoch, step 2"


def test_summary_names_stage_epoch_and_step():
    sel = Selection("map@100")
    sel.update({"kind": "val", "stage": 0, "epoch": 1, "global_step": 8, "map@100": 0.5})
    assert sel.summary() == "selected stage 0 epoch 1 (step 8): best map@100 = 0.5000 (max)"
