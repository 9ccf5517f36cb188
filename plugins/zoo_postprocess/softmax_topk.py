"""Classifier recognition: softmax over the head's logits, top-k classes per query.

Seed: GLR2019 CS230 project (TylerYep/landmark ``NUM_TOP_PREDICTS=20``; SEED_SYSTEMS.md 5.1): the
prediction is the top softmax class with its probability; the ``k=20`` best are kept as candidates
(``Recognition.top_labels``). ``temperature`` divides the logits first (1 = plain softmax; ArcFace
cosine heads want their scale, e.g. 30). ``restrict_to_gallery`` keeps only classes present in
``labels["gallery"]`` when that is given.

Needs: ``head_logits`` (Q x C); no neighbour lists.
"""

from __future__ import annotations

import numpy as np

from zoo.postprocess import Output, PostprocessInputs, Recognition
from zoo_postprocess.base import BasePostprocessor


class SoftmaxTopK(BasePostprocessor):
    """GLR2019: softmax over the classifier's logits; top-1 prediction and the top-20 candidates."""

    name = "softmax-topk"
    needs = frozenset({"head_logits"})

    def __init__(self, k: int = 20, temperature: float = 1.0, restrict_to_gallery: bool = False) -> None:
        self.k, self.temperature = int(k), float(temperature)
        self.restrict_to_gallery = bool(restrict_to_gallery)

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Recognition:
        import torch

        logits = torch.from_numpy(np.ascontiguousarray(inputs.require_head(self.name), dtype=np.float32))
        if self.restrict_to_gallery and "gallery" in inputs.labels:
            present = np.zeros(logits.shape[1], dtype=bool)
            lab = np.asarray(inputs.labels["gallery"])
            present[lab[(lab >= 0) & (lab < logits.shape[1])]] = True
            logits = logits.masked_fill(torch.from_numpy(~present)[None, :], float("-inf"))
        k = min(self.k, logits.shape[1])
        # the softmax is monotone: pick the top classes on the logits, then normalise in float64
        top_l = torch.topk(logits, k, dim=1, sorted=False).indices
        x = logits.double()
        if self.temperature != 1.0:
            x /= self.temperature
        log_z = torch.logsumexp(x, dim=1, keepdim=True)
        top_p = torch.exp(torch.gather(x, 1, top_l) - log_z).numpy()
        top_l = top_l.numpy().astype(np.int64)
        order = np.lexsort((top_l, -top_p), axis=1)
        top_l = np.take_along_axis(top_l, order, 1)
        top_p = np.take_along_axis(top_p, order, 1)
        return Recognition(top_l[:, 0], top_p[:, 0], top_l, top_p)
