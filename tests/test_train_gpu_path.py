"""The GPU training path, tested on the CPU (issue 13.6): the device prefetcher issues batch n+1's copy
(and normalisation) on a side stream before batch n is used, makes the compute stream wait and marks
the tensors as used there; on the CPU it is the loader unchanged; and the trainer's step reads nothing
back from the device between metrics records (counted with a TorchFunctionMode)."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from test_train_support import synthetic_images, tiny_cfg, tiny_registry
from zoo.train.prefetch import DevicePrefetcher

ZOO_TRAIN = str(Path(__file__).resolve().parents[1] / "zoo" / "train")
#: tensor calls that make a CUDA stream wait for the host (or copy a device value to it)
SYNCING = {"item", "tolist", "cpu", "numpy", "nonzero", "__int__", "__float__", "__bool__", "__index__",
           "masked_select", "unique", "argwhere"}
#: host-side data preparation (runs in loader workers / before the copy), not the step
HOST_SIDE = ("data.py", "files.py")
#: functions that read host tensors only (a device tensor is never read: tested below)
HOST_ONLY = ("check_labels",)
#: torch's DataLoader: host-only work on host tensors (its seeds come from a CPU generator)
TORCH_DATA = str(Path(torch.utils.data.__file__).parent)


class SyncCounter(TorchFunctionMode):
    """Records ``(function of zoo.train that made the call, global step)`` of every synchronising call."""

    def __init__(self, state_ref: list) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.state_ref = state_ref

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        bool_index = name == "__getitem__" and len(args) > 1 and isinstance(args[1], torch.Tensor) \
            and args[1].dtype == torch.bool
        if name in SYNCING or bool_index:
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(TORCH_DATA):
                return func(*args, **(kwargs or {}))  # the DataLoader's host work (e.g. its base seed)
            while frame is not None and not frame.f_code.co_filename.startswith(ZOO_TRAIN):
                if frame.f_code.co_name in HOST_ONLY:
                    return func(*args, **(kwargs or {}))
                frame = frame.f_back
            if frame is not None and not frame.f_code.co_filename.endswith(HOST_SIDE):
                state = self.state_ref[0] if self.state_ref else None
                self.calls.append((frame.f_code.co_qualname, getattr(state, "global_step", -1)))
        return func(*args, **(kwargs or {}))


class FakeStreams:
    """Stands in for :class:`zoo.train.prefetch.CudaStreams`: records what happens on which stream."""

    def __init__(self, events: list) -> None:
        self.events = events
        self.on_side_now = False

    @contextlib.contextmanager
    def on_side(self):
        self.on_side_now = True
        try:
            yield
        finally:
            self.on_side_now = False

    def wait_for_side(self) -> None:
        self.events.append("wait")

    def mark_used_here(self, tensor: torch.Tensor) -> None:
        self.events.append(("used", int(tensor.flatten()[0]) if tensor.dtype != torch.float32 else "img"))


def make_batches(n: int) -> list[dict]:
    return [{"image": torch.full((2, 3, 4, 4), i, dtype=torch.uint8), "target": torch.tensor([i, i]),
             "index": torch.tensor([0, 1]), "skipped": []} for i in range(n)]


def test_prefetcher_on_cpu_is_the_loader_unchanged():
    batches = make_batches(3)
    got = list(DevicePrefetcher(batches, torch.device("cpu"), transform_images=lambda x: x.float()))
    assert len(got) == 3 and all(a is b for a, b in zip(got, batches))


def test_prefetcher_copies_the_next_batch_on_the_side_stream_before_this_one_is_used():
    events: list = []
    streams = FakeStreams(events)
    moved: list = []

    class CopyLog(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == "to":
                moved.append((streams.on_side_now, (kwargs or {}).get("non_blocking")))
                events.append(("copy", int(args[0].flatten()[0])))
            return func(*args, **(kwargs or {}))

    def normalise(x):
        assert streams.on_side_now, "images must be normalised on the side stream"
        events.append("normalise")
        return x.float() / 255

    pre = DevicePrefetcher(make_batches(3), torch.device("cpu"), transform_images=normalise, streams=streams)
    with CopyLog():
        for batch in pre:
            events.append(("use", int(batch["target"][0])))
            assert batch["image"].dtype == torch.float32 and batch["skipped"] == []
    assert moved and all(side and nb is True for side, nb in moved)  # every copy: side stream, non_blocking
    uses = [e for e in events if isinstance(e, tuple) and e[0] == "use"]
    assert uses == [("use", 0), ("use", 1), ("use", 2)]
    for i in range(3):
        use = events.index(("use", i))
        # the compute stream waited and the tensors were marked used before batch i was handed over
        assert "wait" in events[:use] and ("used", i) in events[:use] and ("used", "img") in events[:use]
        if i < 2:  # batch i+1 was already being copied while batch i trains
            assert events.index(("copy", i + 1)) < use
    assert events.count("wait") == 3 and events.count("normalise") == 3


def test_prefetcher_passes_all_unreadable_batches_through():
    bad = {"image": None, "target": None, "index": None, "skipped": [{"index": 0, "path": "x", "error": "e"}]}
    batches = [make_batches(1)[0], bad]
    got = list(DevicePrefetcher(batches, torch.device("cpu"), streams=FakeStreams([])))
    assert got[1] is bad and got[0]["image"].dtype == torch.uint8


def test_the_step_reads_nothing_back_between_metrics_records(tmp_path):
    """7 batches an epoch, log_every 3, 2 epochs: the only synchronising calls of zoo.train are the
    metrics logger's at steps 3, 6, 7 (epoch end), 9, 12, 14 and the end-of-epoch bookkeeping."""
    from zoo.train.data import TensorSource
    from zoo.train import engine

    images, labels = synthetic_images(n_classes=4, per_class=7, size=16)
    cfg = tiny_cfg(epochs=2, batch_size=4, log_every=3, amp="bf16", clip_grad=1.0)
    state_ref: list = []
    trainer = engine.Trainer(cfg, TensorSource({"train": (images, labels)}), tmp_path, registry=tiny_registry(),
                             device="cpu", progress=False)
    state_ref.append(trainer.state)
    counter = SyncCounter(state_ref)
    with counter:
        trainer.fit()
    assert trainer.state.global_step == 14
    in_steps = Counter(counter.calls)
    logger = {k: v for k, v in in_steps.items() if k[0] == "MetricsLogger.on_step_end"}
    assert set(logger) == {("MetricsLogger.on_step_end", s) for s in (3, 6, 7, 9, 12, 14)}
    assert all(v == 1 for v in logger.values())  # one read of the window per record
    step_path = ("TrainStep.", "EpochLoop._start", "MetricsLogger.on_batch_end", "ProgressBar.", "DevicePrefetcher.")
    assert not [k for k in in_steps if k[0].startswith(step_path)]
    # everything else happens at epoch ends (steps 7 and 14): epoch meters, checkpoint, weights
    assert {s for (_, s) in in_steps} <= {3, 6, 7, 9, 12, 14}
    assert {s for (f, s) in in_steps if f != "MetricsLogger.on_step_end"} <= {7, 14}


def test_loss_label_check_does_not_read_device_tensors():
    """check_labels reads min/max of host tensors only (a GPU tensor would synchronise every step)."""
    from zoo_losses.arcface import LossInputError, check_labels

    check_labels(torch.zeros(4, dtype=torch.int64, device="meta"), 10)  # .min().item() would raise on meta
    with pytest.raises(LossInputError):
        check_labels(torch.tensor([0, 12]), 10)


def test_step_normalises_like_the_data_config_with_constants_built_once():
    """TrainStep.normalize == DataConfig.normalize bit for bit; the constants are built once per device
    (a per-batch torch.tensor(..., device="cuda") would be a blocking host-to-device copy)."""
    from zoo.data.config import DataConfig, _scaled_constants
    from zoo.train.step import TrainStep

    cfg = DataConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    step = TrainStep(torch.nn.Identity(), lambda a, b: a.sum(), torch.optim.SGD([torch.nn.Parameter(torch.ones(1))]),
                     device=torch.device("cpu"), data_config=cfg, channels_last=True)
    x = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(step.normalize(x), cfg.normalize(x, channels_last=False))
    consts = _scaled_constants(cfg.mean, cfg.std, torch.device("cpu"))
    prepared = step.prepare(x)
    assert all(a is b for a, b in zip(_scaled_constants(cfg.mean, cfg.std, torch.device("cpu")), consts))
    assert prepared.is_contiguous(memory_format=torch.channels_last) and torch.equal(prepared, cfg.normalize(x))
    assert step.prepare(prepared) is prepared  # a prepared batch passes through untouched
