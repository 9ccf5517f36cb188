"""Augmentation pipelines on real photos and the batch mixers' soft targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.data.images import read_image
from zoo.plugins import load_registry


@pytest.fixture(scope="module")
def reg():
    return load_registry(strict=True, only=("augment",))


@pytest.fixture(scope="module")
def photo(photo_paths):
    return read_image(photo_paths["chelsea"])  # 300 x 451 RGB


PIPELINES = [
    ("glr2020_train", {}),
    ("glr2020_val", {}),
    ("glr2021_train", {}),
    ("glr2021_val", {}),
    ("guie_train", {}),
    ("guie_val", {}),
    ("resize_val", {}),
    ("glr2019_train", {}),
    *[("top100_train", {"stage": s}) for s in range(1, 6)],
    *[("top100_val", {"stage": s}) for s in (1, 5)],
]


@pytest.mark.parametrize("name,kw", PIPELINES, ids=[f"{n}{kw.get('stage', '')}" for n, kw in PIPELINES])
def test_pipeline_on_a_real_photo(reg, photo, name, kw):
    pipe = reg.create("augmentation", name, 64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), **kw)
    assert reg.get("augmentation", name).meta["role"] == "pipeline"
    pipe.set_random_seed(0)
    x = pipe(image=photo)["image"]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (3, 64, 64)
    assert torch.isfinite(x).all()
    # normalised with the given mean/std: (v/255 - .5)/.25 lies in [-2, 2]
    assert float(x.min()) >= -2.0 - 1e-5 and float(x.max()) <= 2.0 + 1e-5
    pipe.set_random_seed(7)
    a = pipe(image=photo)["image"]
    pipe.set_random_seed(7)
    b = pipe(image=photo)["image"]
    assert torch.equal(a, b), "seeded pipelines are reproducible"


def test_val_pipeline_is_resize_and_normalize(reg, photo):
    import cv2

    x = reg.create("augmentation", "glr2020_val", 48)(image=photo)["image"]
    ref = cv2.resize(photo, (48, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    ref = (ref - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    assert np.allclose(x.permute(1, 2, 0).numpy(), ref, atol=1e-4)


def test_glr2020_cutout_is_an_old_style_clipped_hole(photo):
    from zoo_augment.cutout import CenterClippedCutout
    import albumentations as A

    img = np.full((100, 100, 3), 200, np.uint8)
    pipe = A.Compose([CenterClippedCutout(40, 40, p=1.0)])
    areas = set()
    for seed in range(40):
        pipe.set_random_seed(seed)
        out = pipe(image=img)["image"]
        zero = (out == 0).all(-1)
        ys, xs = np.nonzero(zero)
        assert zero.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1), "one rectangle"
        assert ys.max() - ys.min() + 1 <= 40 and xs.max() - xs.min() + 1 <= 40
        areas.add(int(zero.sum()))
    assert 1600 in areas and min(areas) < 1600, "whole holes inside, clipped holes at the border"


def test_affine_keeps_aspect_like_old_shift_scale_rotate():
    from zoo_augment.pipelines import glr2020_train

    pipe = glr2020_train(32)
    affine = pipe.transforms[2]
    assert affine.keep_ratio is True and affine.p == 0.7
    assert affine.scale == {"x": (0.8, 1.2), "y": (0.8, 1.2)}
    assert affine.translate_percent == {"x": (-0.2, 0.2), "y": (-0.2, 0.2)}
    assert tuple(affine.rotate) == (-10, 10)
    assert tuple(pipe.transforms[1].quality_range) == (99, 100)
    cut = pipe.transforms[4]
    assert (cut.hole_height, cut.p) == (int(32 * 0.4), 0.5)


def test_top100_stage_table_sizes():
    from zoo_augment.pipelines import TOP100_STAGES, top100_train

    assert [TOP100_STAGES[s].batch_size for s in range(1, 6)] == [32, 8, 8, 8, 4]
    st5 = top100_train(640, stage=5)
    assert (st5.transforms[0].height, st5.transforms[1].height) == (704, 640)  # Resize 704 -> RandomCrop 640
    st3 = top100_train(448, stage=3)
    drop = [t for t in st3.transforms if type(t).__name__ == "CoarseDropout"][0]
    assert tuple(drop.hole_height_range) == (64, 64) and drop.p == 0.5
    st1 = top100_train(224, stage=1)
    assert not [t for t in st1.transforms if type(t).__name__ == "RandomCrop"]
    with pytest.raises(Exception, match="stage must be 1..5"):
        top100_train(224, stage=6)
    from zoo_augment.pipelines import top100_val

    sizes = [t.height for t in top100_val(448).transforms if type(t).__name__ == "Resize"]
    assert sizes == [512, 448]  # the stage-2 pre-resize, then the post-resize
    assert [t.height for t in top100_val(300).transforms if type(t).__name__ == "Resize"] == [300]


# -- batch mixers ---------------------------------------------------------------------------------
MIXERS = ["mix_top100", "fmix", "cutmix", "mixup"]


def _soft(targets, num_classes):
    """The mixed targets as a class-weight matrix (rows: lam on y_a, 1 - lam on y_b)."""
    from zoo.train.step import MixedTargets

    if not isinstance(targets, MixedTargets):
        return torch.nn.functional.one_hot(targets, num_classes).float()
    hot = torch.nn.functional.one_hot
    return targets.lam * hot(targets.targets, num_classes).float() + (1 - targets.lam) * hot(targets.shuffled, num_classes).float()


@pytest.mark.parametrize("name", MIXERS)
def test_mixer_targets_pair_each_image_with_a_permutation(reg, name):
    from zoo.train.step import MixedTargets

    mixer = reg.create("augmentation", name)
    assert reg.get("augmentation", name).meta["role"] == "batch"
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 24, 24)
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    for _ in range(6):
        out, mixed = mixer(images, targets, 5, g)
        assert out.shape == images.shape
        if not isinstance(mixed, MixedTargets):  # mix_top100's unmixed quarter keeps the int targets
            assert name == "mix_top100" and torch.equal(mixed, targets) and torch.equal(out, images)
            continue
        assert torch.equal(mixed.targets, targets) and 0.0 <= mixed.lam <= 1.0
        # y_b is a permutation of the batch's targets
        assert sorted(mixed.shuffled.tolist()) == sorted(targets.tolist())
        soft = _soft(mixed, 5)
        assert torch.allclose(soft.sum(1), torch.ones(8), atol=1e-6)
        # each row keeps weight on its own class
        assert (soft[torch.arange(8), targets] > 0).all()


def test_mixers_are_exact_about_lambda():
    from zoo_augment.mix import CutMix, FMix, MixUp

    a = torch.zeros(2, 1, 20, 20)
    a[1] = 1.0
    t = torch.tensor([0, 1])
    paired = 0
    for seed in range(8):
        for mixer in (CutMix(), MixUp()):
            g = torch.Generator().manual_seed(seed)
            out, mixed = mixer(a, t, 2, g)
            # image 0 is zeros; its mean equals the weight given to the other class when paired with image 1
            if int(mixed.shuffled[0]) == 1:
                paired += 1
                assert torch.isclose(out[0].mean(), torch.tensor(1.0 - mixed.lam), atol=1e-5)
        g = torch.Generator().manual_seed(seed)
        out, mixed = FMix()(a, t, 2, g)
        if int(mixed.shuffled[0]) == 1:  # FMix weighs by the sampled lam; the mask holds ceil/floor(lam H W)
            paired += 1
            assert abs(float(out[0].mean()) - (1.0 - mixed.lam)) <= 1.0 / 400 + 1e-6
    assert paired
    g = torch.Generator().manual_seed(0)
    kept = []
    for _ in range(30):
        _, mixed = CutMix()(torch.rand(4, 3, 50, 50), torch.arange(4), 4, g)
        own = _soft(mixed, 4)[torch.arange(4), torch.arange(4)]
        kept += own[own < 1].tolist()
    # lambda is clipped to [0.3, 0.4]; the weight is then the exact unpasted area (>= lambda when the
    # box is clipped at a border)
    assert kept and min(kept) >= 0.3
    assert any(0.3 <= k <= 0.45 for k in kept), "unclipped boxes give lambda in [0.3, 0.4] (+ int rounding)"


def test_mix_top100_choice_frequencies():
    from zoo_augment.mix import mix_top100

    mixer = mix_top100()
    g = torch.Generator().manual_seed(1)
    seen = []
    for _ in range(200):
        mixer(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), 2, g)
        seen.append(mixer.last)
    freq = {k: seen.count(k) / 200 for k in ("fmix", "cutmix", "mixup", "none")}
    assert all(0.15 < v < 0.35 for v in freq.values()), freq
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3])
    o1, s1 = mixer(x, y, 4, g1)
    o2, s2 = mixer(x, y, 4, g2)
    assert torch.equal(o1, o2) and torch.equal(_soft(s1, 4), _soft(s2, 4)), "mixing is a function of the generator"
