"""The albumentations 0.4/1.0 ``Cutout`` that GLR2020 3rd and GLR2021 1st place trained with, for 2.x.

``Cutout(max_h_size=h, max_w_size=w, num_holes=n, fill_value=0)`` placed each hole's centre
uniformly over the image (``y = randint(0, H)`` inclusive) and clipped the hole at the border:
``y1 = clip(y - h // 2, 0, H)``, ``y2 = clip(y1 + h, 0, H)`` (same for x), so holes near a border are
smaller. albumentations 2.x removed ``Cutout``; its ``CoarseDropout`` always keeps the hole whole and
inside the image, which changes the amount erased. This transform keeps the old placement and draws
from the pipeline's seeded ``py_random``, so ``Compose.set_random_seed`` makes it reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform


class CenterClippedCutout(ImageOnlyTransform):
    """``num_holes`` holes of ``hole_height x hole_width`` pixels, centres uniform, clipped at borders."""

    def __init__(self, hole_height: int, hole_width: int, num_holes: int = 1, fill: float = 0, p: float = 0.5) -> None:
        super().__init__(p=p)
        if hole_height < 1 or hole_width < 1 or num_holes < 1:
            raise ValueError(
                f"Cutout: hole_height/hole_width/num_holes must be >= 1 (got {hole_height}, {hole_width}, {num_holes})"
            )
        self.hole_height = int(hole_height)
        self.hole_width = int(hole_width)
        self.num_holes = int(num_holes)
        self.fill = fill

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        holes = []
        for _ in range(self.num_holes):
            y = self.py_random.randint(0, height)
            x = self.py_random.randint(0, width)
            y1 = int(np.clip(y - self.hole_height // 2, 0, height))
            y2 = int(np.clip(y1 + self.hole_height, 0, height))
            x1 = int(np.clip(x - self.hole_width // 2, 0, width))
            x2 = int(np.clip(x1 + self.hole_width, 0, width))
            holes.append((y1, y2, x1, x2))
        return {"holes": holes}

    def apply(self, img: np.ndarray, holes: list[tuple[int, int, int, int]] = (), **params: Any) -> np.ndarray:
        if not holes:
            return img
        img = img.copy()
        for y1, y2, x1, x2 in holes:
            img[y1:y2, x1:x2] = self.fill
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hole_height", "hole_width", "num_holes", "fill")
