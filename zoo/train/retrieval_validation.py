"""Retrieval validation each epoch: mAP@100, R@1 and mP@5 of the model's descriptors on a retrieval set.

The figures are the ones a user gets from the trained weights with ``zoo embed`` + ``zoo retrieve
--no-postprocess`` + ``zoo evaluate``, because every step is theirs:

* descriptors: :class:`zoo.inference.embed.Embedder` + :func:`~zoo.inference.embed.embed_records`
  with ``zoo embed``'s defaults (the model's :class:`~zoo.data.config.DataConfig`: size rule,
  interpolation, mean/std; whole-image decoding; channels_last; autocast ``auto``: off on CPU, bf16 on
  CUDA; the recipe's ``inference.flip_tta``; batches of :attr:`EmbedOptions.batch_size`);
* ranking: :func:`zoo.inference.pipeline.retrieve` (exact inner-product search, each query's own image
  left out when the set queries itself), top 100, no post-processing;
* metrics: :func:`zoo.inference.retrieval.retrieval_metrics`, the registered ``map_at_k`` /
  ``recall_at_k`` / ``mp_at_k`` that ``zoo evaluate`` uses (queries without positives left out).

Under torchrun every rank embeds a share of the images; the descriptors are gathered and every rank
computes the same figures. The model is put back in training mode and in its training memory layout
afterwards.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from zoo.data.images import ImageRecord
from zoo.distributed import DistContext
from zoo.registry import Registry
from zoo.train.callbacks import Callback, EpochState
from zoo.train.data import RetrievalSet, TrainDataError
from zoo.train.state import TrainState

log = logging.getLogger(__name__)

#: depth of the validation ranking (Kaggle GLR retrieval: mAP@100)
DEPTH = 100
#: the record keys of retrieval validation <- the names :func:`zoo.inference.retrieval.retrieval_metrics` prints
RECORD_KEYS = {"mAP@100": "map@100", "R@1": "recall@1", "mP@5": "mp@5"}


def check_retrieval_set(rset: RetrievalSet) -> None:
    """Refuse a set no query of which has a positive (nothing to measure) or with repeated ids."""
    for side, recs in (("gallery", rset.gallery), ("queries", rset.queries or [])):
        seen: set[str] = set()
        dup = next((r.id for r in recs if r.id in seen or seen.add(r.id)), None)  # type: ignore[func-returns-value]
        if dup is not None:
            raise TrainDataError(f"retrieval validation: image id '{dup}' appears twice in the {side}; ids must be unique")
    gallery_labels: dict[str, int] = {}
    for r in rset.gallery:
        if r.label is not None:
            gallery_labels[str(r.label)] = gallery_labels.get(str(r.label), 0) + 1
    queries = rset.gallery if rset.queries is None else rset.queries
    need = 2 if rset.queries is None else 1
    if not any(r.label is not None and gallery_labels.get(str(r.label), 0) >= need for r in queries):
        raise TrainDataError(
            "retrieval validation: no query has a positive in the gallery (every label appears once"
            f"{'' if rset.queries is None else ' or no query label is in the gallery'}); give a set whose "
            "instances have at least two photos each"
        )


class RetrievalValidator(Callback):
    """Adds ``map@100``, ``recall@1``, ``mp@5`` and ``val_queries`` to each complete epoch's record."""

    def __init__(
        self,
        rset: RetrievalSet,
        *,
        ctx: DistContext,
        registry: Registry,
        flip_tta: bool = False,
        channels_last: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> None:
        from zoo.inference.embed import EmbedOptions

        self.rset, self.ctx, self.registry = rset, ctx, registry
        self.flip_tta = bool(flip_tta)
        self.train_layout = torch.channels_last if channels_last else torch.contiguous_format
        self.batch_size = int(batch_size or EmbedOptions().batch_size)
        self.workers = workers  # None: zoo embed's default for the device

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        record = self.evaluate(state.eval_model, state)
        epoch.record.update(record)

    # -- embedding -------------------------------------------------------------------------------
    def _embed(self, model: nn.Module, records: Sequence[ImageRecord], state: TrainState | None) -> tuple[np.ndarray, np.ndarray]:
        """``(record indices int64, descriptors float32)`` of the readable ``records`` (all ranks' shares)."""
        from zoo.inference.embed import Embedder, embed_records

        ctx = self.ctx
        share = list(range(ctx.rank, len(records), ctx.world_size))
        recs = [records[i] for i in share]
        embedder = Embedder(model, device=ctx.device, amp="auto", channels_last=True, flip_tta=self.flip_tta)
        ids, emb, skipped = embed_records(embedder, recs, batch_size=self.batch_size, num_workers=self.workers)
        if state is not None:
            pos = {r.id: i for i, r in zip(share, recs)}
            for s in skipped:
                state.skips.add(pos.get(s.id, -1), s.path, s.error)
        where = {r.id: i for i, r in zip(share, recs)}
        idx = torch.tensor([where[i] for i in ids], dtype=torch.int64)
        vecs = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).reshape(len(ids), -1)
        idx, vecs = ctx.all_gather_cat(idx), ctx.all_gather_cat(vecs)
        order = torch.argsort(idx)
        return idx[order].numpy(), vecs[order].numpy()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, state: TrainState | None = None) -> dict[str, float]:
        """The retrieval figures of ``model`` on the set (see the module docstring)."""
        was_training = model.training
        try:
            g_idx, g_emb = self._embed(model, self.rset.gallery, state)
            if self.rset.queries is None:
                q_idx, q_emb = g_idx, g_emb
            else:
                q_idx, q_emb = self._embed(model, self.rset.queries, state)
        finally:
            model.train(was_training)
            model.to(memory_format=self.train_layout)  # the Embedder switched it to channels_last
        return self.score(q_idx, q_emb, g_idx, g_emb)

    def score(self, q_idx: np.ndarray, q_emb: np.ndarray, g_idx: np.ndarray, g_emb: np.ndarray) -> dict[str, float]:
        """Rank and score embedded rows (``*_idx``: record indices into the queries / gallery)."""
        from zoo.inference.pipeline import retrieve
        from zoo.inference.retrieval import retrieval_metrics

        gallery = self.rset.gallery
        queries = gallery if self.rset.queries is None else self.rset.queries
        g_ids = [gallery[i].id for i in g_idx]
        q_ids = [queries[i].id for i in q_idx]
        g_labels = [None if gallery[i].label is None else str(gallery[i].label) for i in g_idx]
        q_labels = [None if queries[i].label is None else str(queries[i].label) for i in q_idx]
        exclude_self = self.rset.all_vs_all
        ranking = retrieve(q_emb, g_emb, k=DEPTH, exclude_self=exclude_self, query_ids=q_ids, gallery_ids=g_ids)
        found = retrieval_metrics(q_ids, q_labels, g_ids, g_labels, ranking.indices, exclude_self=exclude_self,
                                  registry=self.registry)
        out = {key: float(found[name]) for name, key in RECORD_KEYS.items() if name in found}
        out["val_queries"] = float(len(q_ids))
        return out


def read_flip_tta(cfg: Any) -> bool:
    """The recipe's ``inference.flip_tta`` (what ``zoo embed`` uses by default)."""
    from omegaconf import OmegaConf

    return bool(OmegaConf.select(cfg, "inference.flip_tta", default=False))
