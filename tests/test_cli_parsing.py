"""One override syntax: ``KEY=VALUE`` anywhere on the line of every command that takes a recipe."""

from __future__ import annotations

import pytest

from zoo.cli import build_parser
from zoo.cli._parser import is_override_token

README_TRAIN = ("train default-finetune --data train.csv --images DIR --out runs/ft train.epochs=3 "
                "--device cpu").split()


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_the_readme_train_example_parses(parser):
    args = parser.parse_args(README_TRAIN)
    assert args.recipe == "default-finetune" and args.overrides == ["train.epochs=3"]
    assert args.data == ["train.csv"] and args.images == "DIR" and args.device == "cpu" and args.out == "runs/ft"


@pytest.mark.parametrize("argv, recipe", [
    ("train default-finetune --data a.csv train.epochs=3", "default-finetune"),
    ("train train.epochs=3 default-finetune --data a.csv", "default-finetune"),
    ("info default train.epochs=3 --keys", "default"),
    ("embed default --images x --out y train.epochs=3", "default"),
    ("recognize default --train a --test b --out c train.epochs=3", "default"),
    ("retrieve default --index a --query b --out c train.epochs=3", "default"),
    ("export default --out x.pt train.epochs=3", "default"),
    ("demo train.epochs=3 --recipe default", "default"),
    ("weights convert up.pth --from glr2020-3rd --recipe default train.epochs=3 --out o.safetensors", "default"),
])
def test_every_recipe_command_takes_bare_overrides_anywhere(parser, argv, recipe):
    args = parser.parse_args(argv.split())
    assert args.overrides == ["train.epochs=3"]
    assert recipe in (getattr(args, "recipe", None),)


@pytest.mark.parametrize("flag", ["-o", "--override", "--set"])
def test_option_aliases_and_order_are_kept(parser, flag):
    args = parser.parse_args(["embed", "default", "a.b=1", flag, "c.d=2", "--images", "x", "+e.f=3", "--out", "y",
                              f"{flag}=g.h=4"])
    assert args.overrides == ["a.b=1", "c.d=2", "+e.f=3", "g.h=4"]


def test_option_values_that_look_like_overrides_stay_option_values(parser):
    args = parser.parse_args("train r --data full=a.csv --data b.csv --images k=v lr.x=1".split())
    assert args.data == ["full=a.csv", "b.csv"] and args.images == "k=v" and args.overrides == ["lr.x=1"]
    # a variable-length option does not swallow an override that follows it
    args = parser.parse_args("export default --out x.pt --photos a.jpg b.jpg data.image_size=64".split())
    assert args.photos == ["a.jpg", "b.jpg"] and args.overrides == ["data.image_size=64"]


def test_commands_without_a_recipe_reject_stray_overrides(parser, capsys):
    with pytest.raises(SystemExit) as exc:
        parser.parse_args("index emb/ --out idx/ train.epochs=3".split())
    assert exc.value.code == 2
    assert "unrecognized arguments: train.epochs=3" in capsys.readouterr().err


@pytest.mark.parametrize("token, expected", [
    ("train.lr=1e-4", True), ("+model.extra=1", True), ("model.head.0.k=[1, 2]", True), ("a=", True),
    ("data/train.csv", False), ("--data=x", False), ("full=a.csv", True), ("./a=b", False), ("1=2", False),
])
def test_override_tokens(token, expected):
    assert is_override_token(token) is expected
