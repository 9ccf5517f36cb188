"""Recipes equal the released systems: stage tables transcribed from the upstream training commands and
configs, the learning rate of every optimizer step of a tiny run against the upstream schedule code,
and the recipes' split rules, data rules and inference switches.

Every expected value below is transcribed from the upstream repository (file and line in the comment),
not from the recipes, so a recipe that drifts fails here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import zoo
from test_train_support import synthetic_images, tiny_registry
from zoo.train.config import resolve_plan
from zoo.train.data import TensorSource
from zoo.train.engine import Trainer

# -- GLR2020 3rd place: README.md training commands (haqishen @ a7947ff) --------------------------------
# (world_size = --nproc_per_node, image size, batch per GPU, --init-lr, --n-epochs, --stop-at-epoch or None,
#  data: step 0 = full GLDv2, later steps = GLDv2x)
GLR2020_README = {
    "glr2020-3rd-effnet-b7": (0, [  # L50-56, --fold 0
        (6, 256, 42, 1e-4, 10, None, "full"), (8, 512, 16, 1e-4, 40, 13, "train"),
        (8, 672, 10, 5e-5, 20, 1, "train"), (8, 672, 10, 1e-4, 14, 4, "train")]),
    "glr2020-3rd-effnet-b6": (1, [  # L62-66, --fold 1
        (4, 256, 64, 1e-4, 10, None, "full"), (8, 512, 22, 1e-4, 40, 28, "train"),
        (8, 768, 10, 1e-5, 5, None, "train")]),
    "glr2020-3rd-effnet-b6b": (1, [  # L62, L70
        (4, 256, 64, 1e-4, 10, None, "full"), (8, 512, 22, 1e-4, 40, 36, "train")]),
    "glr2020-3rd-effnet-b5": (2, [  # L76-80, --fold 2
        (4, 256, 64, 1e-4, 10, None, "full"), (8, 576, 24, 1e-4, 40, 16, "train"),
        (8, 768, 13, 5e-5, 20, 1, "train")]),
    "glr2020-3rd-effnet-b5b": (2, [  # L76, L84-86
        (4, 256, 64, 1e-4, 10, None, "full"), (8, 576, 24, 1e-4, 40, 33, "train"),
        (8, 768, 13, 3e-5, 5, 4, "train")]),
    "glr2020-3rd-effnet-b4": (0, [  # L92-98, --fold 0
        (2, 256, 128, 1e-4, 10, None, "full"), (8, 704, 22, 1e-4, 50, 16, "train"),
        (8, 768, 16, 5e-5, 20, 1, "train"), (8, 768, 16, 1e-4, 20, 4, "train")]),
    "glr2020-3rd-effnet-b3": (1, [  # L104-110, --fold 1
        (2, 256, 128, 1e-4, 10, None, "full"), (8, 544, 17, 1e-4, 40, 29, "train"),
        (8, 768, 22, 5e-5, 5, None, "train"), (8, 768, 22, 5e-5, 5, None, "train")]),
    "glr2020-3rd-resnest101": (4, [  # L116-122, --fold 4
        (6, 256, 42, 3e-5, 10, None, "full"), (8, 576, 30, 3e-5, 40, 16, "train"),
        (8, 768, 16, 2e-5, 20, 1, "train"), (8, 768, 16, 4e-5, 16, 5, "train")]),
    "glr2020-3rd-rexnet200": (4, [  # L128-130, --fold 4
        (4, 256, 64, 1e-4, 10, None, "full"), (8, 768, 19, 1e-4, 50, 38, "train")]),
}


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other test processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _plan(name: str, registry=None):
    return resolve_plan(zoo.get_recipe(name, registry=registry))


@pytest.mark.parametrize("name", sorted(GLR2020_README))
def test_glr2020_stage_tables_equal_readme_commands(name, registry):
    fold, rows = GLR2020_README[name]
    plan = _plan(name, registry)
    got = [(s.world_size, s.image_size, s.batch_size, s.lr, s.epochs, s.stop_at, s.data) for s in plan.stages]
    assert got == rows
    assert plan.split == {"type": "glr2020", "fold": fold}
    for s in plan.stages:  # train.py L176/L200-201: Adam without weight decay, x10 warm-up over cosine restarts
        assert s.optimizer == {"type": "adam", "weight_decay": 0.0}
        assert s.scheduler == {"type": "gradual_warmup_v2", "multiplier": 10, "total_epoch": 1,
                               "after": "cosine_restarts"}
        assert not s.continue_schedule and s.accumulate == 1


class _UpstreamWarmupV2:
    """warmup_scheduler 0.3.2 ``GradualWarmupScheduler.step(epoch)`` with haqishen ``util.py``'s V2
    ``get_lr`` (L43-54), wrapping a real ``torch`` ``CosineAnnealingWarmRestarts``: the test oracle."""

    def __init__(self, optimizer, multiplier, total_epoch, after):
        self.optimizer, self.multiplier, self.total_epoch, self.after = optimizer, multiplier, total_epoch, after
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.finished = False
        self.last_epoch = 0
        self._set(self.get_lr())

    def _set(self, lrs):
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr

    def get_lr(self):
        if self.last_epoch > self.total_epoch:
            if not self.finished:
                self.after.base_lrs = [b * self.multiplier for b in self.base_lrs]
                self.finished = True
            return self.after.get_lr()
        return [b * ((self.multiplier - 1.0) * self.last_epoch / self.total_epoch + 1.0) for b in self.base_lrs]

    def step(self, epoch):
        if self.finished:
            self.after.step(epoch - self.total_epoch)
        else:
            self.last_epoch = epoch
            self._set(self.get_lr())


def glr2020_epoch_lrs(init_lr: float, n_epochs: int, last_epoch: int) -> list[float]:
    """The lr of each epoch 1..last_epoch as train.py L200-209 sets it (``scheduler_warmup.step(epoch - 1)``)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=init_lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, n_epochs - 1)
    warm = _UpstreamWarmupV2(opt, 10, 1, cosine)
    out = []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about get_lr()/step(epoch), as it did upstream
        for epoch in range(1, last_epoch + 1):
            warm.step(epoch - 1)
            out.append(opt.param_groups[0]["lr"])
    return out


def _tiny(cfg, image_size: int = 8):
    """Shrink a recipe for a CPU run without touching its schedule: tiny BN-free CNN, 8 px, fp32."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.model.backbone = {"type": "test_tiny_cnn"}
    cfg.model.embedding_dim = 8
    cfg.train.amp = "off"
    cfg.train.workers = 0
    cfg.train.log_every = 1
    cfg.train.split = None  # the schedule alone: the held-out rows of the recipe's split are tested apart
    for st in cfg.train.stages:
        st.image_size = image_size
        st.amp = "off"
    return cfg


def _step_lrs(run_dir) -> list[tuple[int, int, float]]:
    """(stage, epoch, lr) of every optimizer step, from the run's metrics log."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["stage"], r["epoch"], r["lr"]) for r in rows if r["kind"] == "train"]


@pytest.mark.parametrize("name", ["glr2020-3rd-effnet-b4", "glr2020-3rd-effnet-b3"])
def test_glr2020_lr_of_every_step_equals_upstream(name, tmp_path, one_thread):
    """A tiny run of the recipe's real stage table: every optimizer step's lr equals the README
    command's --init-lr through train.py's schedule (B4/B3 later steps used the wrong lr before)."""
    fold, rows = GLR2020_README[name]
    # one batch per epoch on the full GLDv2 step, two on the later steps (drop_last, train.py L215)
    data = {key: synthetic_images(n_classes=4, per_class=-(-n // 4), size=8)
            for key, n in (("full", rows[0][2]), ("train", 2 * max(r[2] for r in rows[1:])))}
    cfg = _tiny(zoo.get_recipe(name))
    Trainer(cfg, TensorSource(data), tmp_path, registry=tiny_registry(), device="cpu", progress=False).fit()
    got = _step_lrs(tmp_path)
    expected = []
    for stage, (_, _, batch, lr, epochs, stop, key) in enumerate(rows):
        steps = len(data[key][1]) // batch
        for epoch, value in enumerate(glr2020_epoch_lrs(lr, epochs, stop or epochs), start=1):
            expected += [(stage, epoch, value)] * steps
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in expected]
    assert [v for *_, v in got] == pytest.approx([v for *_, v in expected], rel=1e-9, abs=0.0)


# -- GLR2021 1st place: released configs (ChristofHenkel @ 1ddd3f6) and the paper's steps -------------
# (data, image size, batch per GPU, lr, epochs, stop_at, accumulate) per stage; world_size 8 (README L8)
GLR2021_STAGES = {
    "glr2021-1st-dolg-b7": [  # cfg_ch_dolg_b7_step{1,2,3}.py, all released
        ("clean", 256, 64, 1e-4, 10, None, 1), ("train", 448, 20, 1e-4, 40, 29, 1), ("train", 448, 4, 5e-5, 15, None, 4)],
    "glr2021-1st-dolg-b5": [  # steps 1-2 assumed (= B7), step 3 cfg_ch_dolg_b5_step3.py
        ("clean", 256, 64, 1e-4, 10, None, 1), ("train", 448, 20, 1e-4, 40, 29, 1), ("train", 768, 10, 5e-5, 7, None, 1)],
    "glr2021-1st-dolg-b6": [  # step 3 cfg_ch_dolg_b6_step3.py, which loads the step-2 run's e25 checkpoint (L47)
        ("clean", 256, 64, 1e-4, 10, None, 1), ("train", 448, 20, 1e-4, 40, 25, 1), ("train", 768, 10, 1e-4, 7, None, 1)],
    "glr2021-1st-hybrid-b3-swin224": [  # step 4 = cfg_ch_hybrid_swin224_b3_3x_1.py
        ("clean", 224, 12, 1e-4, 10, None, 1), ("train", 448, 12, 1e-4, 1, None, 1),
        ("train", 448, 12, 1e-4, 40, 30, 1), ("train", 896, 12, 1e-4, 40, 16, 1)],
    "glr2021-1st-hybrid-b5-swin224": [  # step 4 = cfg_ch_hybrid_swin224_b5_s3x.py
        ("clean", 224, 8, 1e-4, 10, None, 1), ("train", 448, 8, 1e-4, 1, None, 1),
        ("train", 448, 8, 1e-4, 40, 30, 1), ("train", 448, 8, 5e-5, 40, 16, 1)],
    "glr2021-1st-hybrid-b6-swin384": [  # step 4 = cfg_ch_hybrid_swin384_b6_s1x_2.py (init: s1x e5, L51)
        ("clean", 384, 16, 2.5e-4, 10, None, 1), ("train", 384, 16, 2.5e-4, 1, None, 1),
        ("train", 384, 16, 2.5e-4, 40, 5, 1), ("train", 384, 16, 2.5e-4, 40, 29, 1)],
}
#: weight decay of the released last step (DOLG B6/B7 1e-4; B5 and the hybrids leave it at default_config's 0)
GLR2021_LAST_WD = {"glr2021-1st-dolg-b7": 1e-4, "glr2021-1st-dolg-b5": 0.0, "glr2021-1st-dolg-b6": 1e-4,
                   "glr2021-1st-hybrid-b3-swin224": 0.0, "glr2021-1st-hybrid-b5-swin224": 0.0,
                   "glr2021-1st-hybrid-b6-swin384": 0.0}


@pytest.mark.parametrize("name", sorted(GLR2021_STAGES))
def test_glr2021_stage_tables(name, registry):
    plan = _plan(name, registry)
    got = [(s.data, s.image_size, s.batch_size, s.lr, s.epochs, s.stop_at, s.accumulate) for s in plan.stages]
    assert got == GLR2021_STAGES[name]
    assert all(s.world_size == 8 for s in plan.stages)  # README L8: 8xV100 DDP
    assert plan.stages[-1].optimizer.get("weight_decay", 0.0) == GLR2021_LAST_WD[name]
    if "hybrid" in name:
        first, embed, unfrozen, last = plan.stages
        # step 1: the plain Swin (its own patch embedding), nothing frozen, GLDv2c (paper §2.2.2)
        assert "model.backbone.embedder=null" in first.model_overrides and not first.trainable and not first.freeze
        # step 2: only the new EfficientNet patch embedding trains; step 3 unfreezes everything
        assert embed.trainable == ["backbone.swin.patch_embed.*"] and not unfrozen.trainable
        assert embed.model_overrides == unfrozen.model_overrides
    if name in ("glr2021-1st-hybrid-b3-swin224", "glr2021-1st-hybrid-b5-swin224"):
        # step 4: one more pretrained block, projection re-initialised (pop_weights patch_embed.proj.weight)
        assert last.reinit == ["backbone.swin.patch_embed.proj"] and not last.model_overrides


def _tiny_hybrid(name: str):
    """The hybrid recipe's own stage list on a tiny two-stage Swin (grid 4, window 2) and timm's
    test_efficientnet embedder: 224 -> 16 px (plain Swin, patch 4), 448 -> 32 px (out index 2), 896 -> 64 px
    (out index 3)."""
    sizes = {224: 16, 448: 32, 896: 64}
    cfg = zoo.get_recipe(name, ["model.backbone.name=swin_tiny_patch4_window7_224",
                                "model.backbone.embedder=test_efficientnet", "model.backbone.img_size=64",
                                "+model.backbone.embed_dim=16", "+model.backbone.depths=[1,1]",
                                "+model.backbone.num_heads=[1,1]", "+model.backbone.window_size=2",
                                "model.embedding_dim=8"])
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.train.amp, cfg.train.workers, cfg.train.log_every = "off", 0, 1
    cfg.train.split = None
    for st in cfg.train.stages:
        st.image_size = sizes[int(st.image_size)]
        st.batch_size, st.epochs, st.stop_at, st.amp = 4, 1, None, "off"
        st.model_overrides = [o.replace("img_size=448", "img_size=32").replace("img_size=224", "img_size=16")
                              for o in st.get("model_overrides", [])]
    return cfg


def test_hybrid_swin_runs_the_four_steps(tmp_path, one_thread):
    """Step 2 trains the new CNN patch embedding against the transformer/neck/head that step 1 trained
    (carried over and frozen), step 3 trains everything, step 4 adds a block and re-initialises the
    projection."""
    from safetensors.torch import load_file

    from zoo.plugins import load_registry

    cfg = _tiny_hybrid("glr2021-1st-hybrid-b3-swin224")
    images, labels = synthetic_images(n_classes=3, per_class=4, size=16)
    Trainer(cfg, TensorSource({"clean": (images, labels), "train": (images, labels)}), tmp_path,
            registry=load_registry(strict=False, disable=(), only=()), device="cpu", progress=False).fit()
    s1, s2, s3, s4 = (load_file(str(tmp_path / f"stage{i}-{n}.safetensors"))
                      for i, n in enumerate(["swin", "embed", "unfrozen", "3x_1"]))
    # step 1 is the plain Swin: its own 4x4 patch projection on RGB, no EfficientNet
    assert s1["backbone.swin.patch_embed.proj.weight"].shape[1:] == (3, 4, 4)
    assert not any(".patch_embed.backbone." in k for k in s1)
    # step 2: transformer, neck and head are step 1's (carried over, frozen); the embedding trained
    body = [k for k in s1 if ".patch_embed." not in k and k in s2 and "num_batches_tracked" not in k]
    assert len(body) > 10
    for k in body:
        if k.endswith("running_mean") or k.endswith("running_var"):
            continue  # BatchNorm statistics still update in train mode
        assert torch.equal(s1[k], s2[k]), k
    assert any(".patch_embed.backbone." in k for k in s2)
    # step 3: everything trains
    assert not torch.equal(s2["backbone.swin.layers.0.blocks.0.attn.qkv.weight"],
                           s3["backbone.swin.layers.0.blocks.0.attn.qkv.weight"])
    # step 4: a deeper embedder (out index 3 -> more channels into the re-initialised projection)
    assert s4["backbone.swin.patch_embed.proj.weight"].shape[1] > s3["backbone.swin.patch_embed.proj.weight"].shape[1]


# -- GUIE 2022 2nd place (XL-H/GUIE-2nd-Place-Solution @ 9274914) ------------------------------------
#: Data_preprocess.ipynb: ``if len(group) < N: continue`` per source dataset (cell: N)
GUIE_NOTEBOOK_MIN = {"Shopee": 3, "Landmark2021": 5, "JD_Products_10K": 5, "Art_MET": 3, "Aliproducts": 5,
                     "Stanford_Cars": 5, "Stanford_Products": 5, "DeepFashion_CTS": 3, "Fruit": 5,
                     "Fashion_200K": 3, "Food2022": 5, "rp2k": 5, "DeepFashion2": 3, "Food2021": 5}


def test_guie_drops_small_classes_per_source_dataset(registry):
    from collections import Counter

    from zoo.data.images import ImageRecord

    cfg = zoo.get_recipe("guie2022-2nd-vith14-64d", registry=registry)
    spec = dict(resolve_plan(cfg).stages[0].resample)
    fn = registry.create("sampler", spec.pop("type"), **spec)
    assert dict(fn.min_images_by_dataset) == GUIE_NOTEBOOK_MIN
    assert sorted(Counter(GUIE_NOTEBOOK_MIN.values()).items()) == [(3, 5), (5, 9)]
    sizes = {("Landmark2021", "lm_a"): 4, ("Landmark2021", "lm_b"): 5, ("Shopee", "sh_a"): 3,
             ("Shopee", "sh_b"): 2, ("rp2k", "rp_a"): 4, ("Other", "ot_a"): 3, ("Other", "ot_b"): 2}
    recs = [ImageRecord(f"{ds}/images/{lab}_{i}.jpg", f"/data/final_data_224/{ds}/images/{lab}_{i}.jpg", lab)
            for (ds, lab), n in sizes.items() for i in range(n)]
    kept = set(Counter(r.label for r in fn(recs, seed=999)))
    # GLDv2 and rp2k need 5 images, Shopee 3; an unlisted dataset the README's 3 (README L55)
    assert kept == {"lm_b", "sh_a", "ot_a"}


def _guie_epoch_lr(epoch: int, step: int, steps: int, n_epochs: int, init_lr: float, warm: int = 1) -> float:
    """GUIE/train.py L120-127 with utils.py L83-92: cosine over E = n_epochs + 1 (train.py L242), replaced
    by the per-step warm-up during the first --warm_up_epochs epochs."""
    if epoch <= warm:
        alpha = ((epoch - 1) * steps + step) / (warm * steps)
        return init_lr * (0.01 * (1.0 - alpha) + alpha)
    return 0.5 * init_lr * (1.0 + math.cos(math.pi * epoch / (n_epochs + 1)))


@pytest.mark.parametrize("name,n_epochs,frozen_last", [
    ("guie2022-2nd-vith14-64d", 3, True),        # paper §3.1: 2 epochs unfrozen + 1 frozen, one schedule
    ("guie2022-2nd-vith14-64d-10ep", 10, False),  # README L98: --n-epochs 10
])
def test_guie_lr_of_every_step_and_horizon(name, n_epochs, frozen_last, tmp_path, one_thread):
    cfg = zoo.get_recipe(name)
    plan = resolve_plan(cfg)
    assert sum(s.epochs for s in plan.stages) == n_epochs
    assert all(s.world_size == 6 and s.batch_size == 32 and s.lr == 1e-4 for s in plan.stages)  # README L90-97
    assert plan.split == {"type": "guie"} and plan.seed == 999
    assert (plan.stages[-1].freeze == ["backbone.*"]) == frozen_last
    tiny = _tiny(cfg)
    tiny.model.pooling = {"type": "avg"}
    tiny.model.neck = {"type": "dropout_linear", "p": 0.2}
    tiny.model.head = {"type": "arcface", "num_classes": 4, "subcenters": 1}
    tiny.train.resample = None  # in-memory data: the re-balancing is checked above
    images, labels = synthetic_images(n_classes=4, per_class=16, size=8)  # 64 images: 2 steps of 32
    Trainer(tiny, TensorSource({"train": (images, labels)}), tmp_path, registry=tiny_registry(), device="cpu",
            progress=False).fit()
    got = [lr for *_, lr in _step_lrs(tmp_path)]
    # the logged lr is param group 0, the backbone's: c * lr with c = 1e-3 (config_clip_224.py L58)
    want = [1e-3 * _guie_epoch_lr(e, i, 2, n_epochs, 1e-4) for e in range(1, n_epochs + 1) for i in range(2)]
    assert got == pytest.approx(want, rel=1e-9)


def test_guie_flip_tta_is_on_in_inference(registry):
    import argparse

    from zoo.cli._options import add_embed_args, add_model_args, flip_tta_from_args

    assert zoo.get_recipe("guie2022-2nd-vith14-64d", registry=registry).inference.flip_tta is True
    p = argparse.ArgumentParser()
    add_model_args(p)
    add_embed_args(p)
    assert flip_tta_from_args(p.parse_args(["guie2022-2nd-vith14-64d"])) is True
    assert flip_tta_from_args(p.parse_args(["guie2022-2nd-vith14-64d", "--no-flip-tta"])) is False
    assert flip_tta_from_args(p.parse_args(["glr2020-3rd-effnet-b5"])) is False
    assert flip_tta_from_args(p.parse_args(["glr2020-3rd-effnet-b5", "--flip-tta"])) is True


# -- splits: sizes and seeds of the recipes' train.split -----------------------------------------------
def _labels(n_classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.choice(np.arange(1, 10 * n_classes) * 97, n_classes, replace=False)
    sizes = rng.integers(20, 60, n_classes)
    y = np.repeat(raw, sizes)
    return y[rng.permutation(len(y))]


@pytest.mark.parametrize("name", sorted(GLR2020_README))
def test_glr2020_split_is_the_members_fold_every_15th_row(name, registry):
    from sklearn.model_selection import StratifiedKFold

    from zoo.data.splits import split_from_spec

    y = _labels(30, 1)
    fold, _ = GLR2020_README[name]
    sp = split_from_spec(y, _plan(name, registry).split)
    folds = np.full(len(y), -1)
    # preprocess.py L9-13 then train.py L157-158
    for k, (_, va) in enumerate(StratifiedKFold(5, shuffle=True, random_state=233).split(np.zeros(len(y)), y)):
        folds[va] = k
    in_fold = np.flatnonzero(folds == fold)
    assert np.array_equal(sp.train, np.flatnonzero(folds != fold))
    assert np.array_equal(sp.val, in_fold[::15]) and len(sp.val) == -(-len(in_fold) // 15)


def test_guie_split_is_fold_1_of_20_seed_999(registry):
    from sklearn.model_selection import StratifiedKFold

    from zoo.data.splits import split_from_spec

    y = _labels(40, 2)
    sp = split_from_spec(y, _plan("guie2022-2nd-vith14-64d", registry).split)
    _, va = list(StratifiedKFold(n_splits=20, shuffle=True, random_state=999).split(y, y))[1]  # README L63-67, L102
    assert np.array_equal(sp.val, np.sort(va)) and len(sp.train) + len(sp.val) == len(y)


def test_top100_split_is_upstreams_80_20(registry):
    """data.py L81-84 numbers classes by first appearance; L121-126 stratifies on that one-column frame
    (sklearn turns 2-D labels into strings), train_size 0.8, test_size 0.2, random_state 0xFACED."""
    from sklearn.model_selection import train_test_split

    from zoo.data.splits import split_from_spec

    y = _labels(60, 3)
    first = {}
    for v in y:
        first.setdefault(int(v), len(first))
    codes = np.array([first[int(v)] for v in y]).reshape(-1, 1)
    _, va = train_test_split(np.arange(len(y)), train_size=0.8, test_size=0.2, random_state=0xFACED, stratify=codes)
    sp = split_from_spec([str(v) for v in y], _plan("glr2021-top100-effnet-b0", registry).split)
    assert np.array_equal(sp.val, np.sort(va))
    assert len(sp.val) == math.ceil(0.2 * len(y)) and len(sp.train) == len(y) - len(sp.val)


def test_glr2019_caps_steps_per_epoch(registry):
    plan = _plan("glr2019-xception-cbp", registry)
    (stage,) = plan.stages
    # const.py L20-22: lr 3e-4, 500 epochs of at most MAX_STEPS_PER_EPOCH = 15000 steps; L13 batch 16
    assert (stage.max_steps_per_epoch, stage.epochs, stage.lr, stage.batch_size) == (15000, 500, 3e-4, 16)
