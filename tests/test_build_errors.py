"""Build-time errors: a component built with arguments it does not accept, or a head without classes, is one
clear ModelBuildError naming the recipe key, the argument and what the component accepts (issue 11, item 8/11)."""

from __future__ import annotations

import pytest

import zoo
from zoo.assembly import ModelBuildError

TINY = ["model.backbone.name=mobilenetv2_035"]


def test_changed_pooling_type_names_the_stale_argument(registry):
    """A changed type drops the old type's arguments (zoo.recipes); an argument the new type does not
    accept, given anyway, is one error naming it and the component's own arguments."""
    model = zoo.create_model("default", overrides=[*TINY, "model.pooling.type=avg"], registry=registry)
    assert type(model.global_pool).__name__ != "GeM"
    with pytest.raises(ModelBuildError) as exc:
        zoo.create_model("default", overrides=[*TINY, "model.pooling.type=avg", "model.pooling.p=3"], registry=registry)
    msg = str(exc.value)
    assert "model.pooling (pooling 'avg') does not accept" in msg and "'p'" in msg
    assert "accepts flatten" in msg and "remove model.pooling.p" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("classes", [-1, 0])
def test_a_head_needs_classes(registry, classes):
    with pytest.raises(ModelBuildError, match=rf"model.head.num_classes={classes}, but a head \('arcface'\) needs at least 1"):
        zoo.create_model("default-finetune", overrides=[*TINY, f"model.head.num_classes={classes}"], registry=registry)


def test_a_model_without_head_keeps_num_classes_zero(registry):
    model = zoo.create_model("default", overrides=TINY, registry=registry)
    assert model.head is None and model.num_classes == 0


def test_open_ended_factory_passes_the_callees_complaint_on(registry):
    """The timm backbone forwards **kwargs to timm: an argument timm rejects is still one clear error."""
    with pytest.raises(ModelBuildError, match=r"model.backbone \(backbone 'timm'\) cannot be built: .*'bogus'"):
        zoo.create_model("default", overrides=[*TINY, "+model.backbone.bogus=3"], registry=registry)


def test_missing_required_argument(registry):
    with pytest.raises(ModelBuildError, match=r"model.backbone \(backbone 'timm'\) needs 'name'.*set model.backbone.name"):
        zoo.create_model("default", overrides=["model.backbone={type: timm, pretrained: false}"], registry=registry)


def test_unknown_neck_argument_lists_the_accepted_ones(registry):
    with pytest.raises(ModelBuildError, match=r"neck 'linear_swish'\) does not accept 'drop'; neck 'linear_swish' accepts bias"):
        zoo.create_model("default", overrides=[*TINY, "model.neck={type: linear_swish, drop: 0.1}",
                                               "model.embedding_dim=64"], registry=registry)


def test_cli_prints_one_line(tmp_path, photo_dir, capsys):
    from zoo.cli import main

    rc = main(["embed", "default", "--no-pretrained", "-o", "model.pooling.type=avg", "model.pooling.p=3", "-o", TINY[0],
               "--images", str(photo_dir), "--out", str(tmp_path / "emb")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "does not accept" in err and "Traceback" not in err and len(err.splitlines()) == 1
