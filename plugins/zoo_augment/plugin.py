"""Built-in ``augmentation`` components: per-image pipelines and batch mixers of the seed systems.

Kind-level contract (``entry.meta["role"]``):

* ``role="pipeline"``: ``factory(image_size: int, *, mean=(r, g, b), std=(r, g, b), **cfg) ->
  albumentations.Compose``; ``pipe(image=uint8 H x W x 3 RGB) -> {"image": float32 tensor 3 x S x S}``,
  normalised with ``mean``/``std`` (0-1 scale, the recipe's ``data:``). Seed its randomness with
  ``pipe.set_random_seed(seed)``. See :mod:`zoo_augment.pipelines` for the 2.x re-expression rules.
* ``role="batch"``: ``factory(**cfg) -> mixer(images B x C x H x W, targets int64 B, num_classes,
  generator) -> (images, targets)``, ``targets`` a :class:`zoo.train.step.MixedTargets` ``(y_a, y_b, lam)``
  for a mixed batch (the trainer's loss is ``lam L(x, y_a) + (1 - lam) L(x, y_b)``) or the int64 targets
  unchanged; see :mod:`zoo_augment.mix`.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar


@hookimpl
def zoo_register_augmentations(registrar: ComponentRegistrar) -> None:
    add = registrar.add
    add("resize_val", "zoo_augment.pipelines:resize_val", role="pipeline",
        description="Resize(S, S) + Normalize (validation of GLR2020 3rd / GLR2021 1st)")
    add("glr2020_train", "zoo_augment.pipelines:glr2020_train", role="pipeline", aliases=("glr2021_train",),
        description="flip, JPEG 99-100, shift-scale-rotate .2/.2/10 p.7, resize, one 0.4S cutout p.5 "
                    "(GLR2020 3rd; GLR2021 1st)")
    add("glr2020_val", "zoo_augment.pipelines:glr2020_val", role="pipeline", aliases=("glr2021_val",),
        description="Resize(S, S) + Normalize (GLR2020 3rd; GLR2021 1st)")
    add("guie_train", "zoo_augment.pipelines:guie_train", role="pipeline", aliases=("guie_val",),
        description="resize, flip, brightness-contrast .1, scale .2 rotate 10, one 0.1-0.2S dropout, "
                    "CLIP mean/std (GUIE 2022 2nd; train and valid)")
    add("top100_train", "zoo_augment.pipelines:top100_train", role="pipeline", test_kwargs={"stage": 3},
        description="GLR2021 top-100 stage 1-5: resize -> random crop -> flip (-> 64px dropout at stage 3)")
    add("top100_val", "zoo_augment.pipelines:top100_val", role="pipeline", test_kwargs={"stage": 2},
        description="GLR2021 top-100 validation: stage pre-resize -> Resize(S) + Normalize")
    add("glr2019_train", "zoo_augment.pipelines:glr2019_train", role="pipeline",
        description="resize 299, flip, one of random-resized-crop / color jitter .2 / affine 15 (GLR2019 CS230)")
    add("mix_top100", "zoo_augment.mix:mix_top100", role="batch",
        description="FMix(a=3) / CutMix(a=1, lam in [.3, .4]) / MixUp(a=.2) with p=.25 each (GLR2021 top-100)")
    add("fmix", "zoo_augment.mix:fmix", role="batch", description="FMix on every batch, alpha=3, decay 1 (GLR2021 top-100)")
    add("cutmix", "zoo_augment.mix:cutmix", role="batch",
        description="CutMix on every batch, alpha=1, lambda clipped to [0.3, 0.4] (GLR2021 top-100)")
    add("mixup", "zoo_augment.mix:mixup", role="batch", description="MixUp on every batch, alpha=0.2 (GLR2021 top-100)")
