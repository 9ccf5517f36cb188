"""Ensemble combiners: descriptor layout (member order, family order, normalisation) and ZooEnsemble wiring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.assembly import ZooEnsemble
from zoo_postprocess.ensembles import EnsembleConfigError, concat, family_mean_concat, family_groups


def _embs(*dims, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, generator=g) * (i + 2) for i, d in enumerate(dims)]


def test_concat_layout_is_member_order_of_normalised_blocks():
    embs = _embs(4, 6, 2)
    out = concat()(embs, [{}, {}, {}])
    assert out.shape == (3, 12)
    starts = [0, 4, 10]
    for e, s in zip(embs, starts):
        torch.testing.assert_close(out[:, s : s + e.shape[1]], F.normalize(e, dim=1))
    torch.testing.assert_close(out.norm(dim=1), torch.full((3,), 3 ** 0.5))


def test_family_mean_concat_averages_per_family_in_first_appearance_order():
    embs = _embs(4, 5, 4, 3, 5)
    cfgs = [{"family": "dolg"}, {"family": "swin"}, {"family": "dolg"}, {"family": "effnet"}, {"family": "swin"}]
    assert family_groups(cfgs) == [("dolg", [0, 2]), ("swin", [1, 4]), ("effnet", [3])]
    out = family_mean_concat()(embs, cfgs)
    assert out.shape == (3, 4 + 5 + 3)
    n = [F.normalize(e, dim=1) for e in embs]
    torch.testing.assert_close(out[:, :4], F.normalize((n[0] + n[2]) / 2, dim=1))
    torch.testing.assert_close(out[:, 4:9], F.normalize((n[1] + n[4]) / 2, dim=1))
    torch.testing.assert_close(out[:, 9:], n[3])
    raw = family_mean_concat(normalize_families=False)(embs, cfgs)
    torch.testing.assert_close(raw[:, :4], (n[0] + n[2]) / 2)


def test_family_mean_concat_errors():
    with pytest.raises(EnsembleConfigError, match="has no 'family'"):
        family_mean_concat()(_embs(4, 4), [{"family": "a"}, {"recipe": "r"}])
    with pytest.raises(EnsembleConfigError, match="mixes descriptor widths"):
        family_mean_concat()(_embs(4, 5), [{"family": "a"}, {"family": "a"}])


class _Member(nn.Module):
    def __init__(self, dim: int, classes: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(3, dim)
        self.cls = nn.Linear(dim, classes)
        self.embedding_dim = dim
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[-1])
        e = self.proj(x.mean((2, 3)))
        return {"embedding": e, "logits": self.cls(e)}

    def embed(self, x):
        return F.normalize(self.forward(x)["embedding"], dim=1)


def test_zoo_ensemble_with_registered_combiners(registry):
    members = [_Member(4, 5, 0), _Member(6, 5, 1), _Member(4, 5, 2)]
    cfgs = [{"family": "a", "image_size": 8}, {"family": "b", "image_size": 12}, {"family": "a", "image_size": 8}]
    x = torch.randn(2, 3, 16, 16)
    ens = ZooEnsemble(members, cfgs, registry.create("ensemble", "family_mean_concat"))
    assert ens.embedding_dim == 10
    out = ens(x)
    assert out["embedding"].shape == (2, 10)
    # each member saw its own image size; head outputs are averaged
    assert members[1].sizes[-1] == 12 and members[0].sizes[-1] == 8
    want = torch.stack([m(F.interpolate(x, size=(c["image_size"],) * 2, mode="bilinear", align_corners=False))["logits"]
                        for m, c in zip(members, cfgs)]).mean(0)
    torch.testing.assert_close(out["logits"], want)
    cat = ZooEnsemble(members, cfgs, registry.create("ensemble", "concat"))
    assert cat.embedding_dim == 14
    emb = cat.embed(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    # layout: block i of the unit descriptor is member i's unit descriptor / sqrt(3)
    first = members[0].embed(F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False))
    torch.testing.assert_close(emb[:, :4], first / 3 ** 0.5)
