"""The weights manifest schema, the repository's manifest, and recipe -> weights lookup."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from zoo.weights.errors import ManifestError, NoPretrainedWeightsError, UnknownWeightsError, UnverifiedWeightsError
from zoo.weights.catalog import entry_for_recipe, get_weights, load_entries
from zoo.weights.schema import parse_manifest, read_manifest

REPO = Path(__file__).resolve().parents[1]
SHA = "ab" * 32

GOOD = {
    "recipe": "default",
    "format": "safetensors",
    "files": [{"name": "x.safetensors", "sha256": SHA, "size": 10, "sources": ["https://example.org/x.safetensors"]}],
    "preprocess": {"input_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"},
    "embedding_dim": 8,
    "license": "MIT",
    "paper": "p",
}


def manifest(entry: dict, name: str = "arch.tag") -> dict:
    return {"schema_version": 1, "weights": {name: entry}}


def broken(path: str, value: object) -> dict:
    entry = copy.deepcopy(GOOD)
    node = entry
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return entry


def test_good_entry_parses():
    (e,) = parse_manifest(manifest(GOOD), "m.yaml").values()
    assert e.arch == "arch" and e.tag == "tag" and e.files[0].sha256 == SHA and e.load_into == "model"


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("files.0.sha256", "abc", "files[0].sha256", "64 lowercase hex"),
        ("files.0.sha256", KeyError, "files[0].sha256", "64 lowercase hex"),
        ("files.0.size", -3, "files[0].size", "positive integer"),
        ("files.0.name", "x.pth", "files[0].name", "safetensors only"),
        ("files.0.name", "../x.safetensors", "files[0].name", "plain file name"),
        ("files.0.sources", ["ftp://host/x"], "files[0].sources[0]", "must start with"),
        ("files.0.sources", ["http://example.org/x.safetensors"], "files[0].sources[0]", "127.0.0.1/localhost only"),
        ("files.0.sources", ["https://example.org/x.pth"], "files[0].sources[0]", "pickle"),
        ("files.0.sources", ["pypi:nopath"], "files[0].sources[0]", "pypi:DISTRIBUTION/PATH"),
        ("format", "pth", "format", "must be 'safetensors'"),
        ("recipe", KeyError, "recipe", "is required"),
        ("license", KeyError, "license", "is required"),
        ("preprocess.mean", [0.5, 0.5], "preprocess.mean", "3 numbers"),
        ("preprocess.interpolation", "fancy", "preprocess.interpolation", "must be one of"),
        ("embedding_dim", 0, "embedding_dim", "positive integer"),
        ("files", [], "files", "non-empty"),
        ("colour", "red", "colour", "unknown field"),
        ("files.0.convert", {"converter": "x", "from": {"name": "a.pth"}}, "files[0].convert.from.sha256", "64 lowercase"),
    ],
)
def test_schema_errors_name_entry_and_field(path, value, field, words):
    with pytest.raises(ManifestError) as err:
        parse_manifest(manifest(broken(path, value)), "m.yaml")
    msg = str(err.value)
    assert "m.yaml: entry 'arch.tag'" in msg
    assert f"field '{field}'" in msg
    assert words in msg


def test_schema_version_is_checked():
    with pytest.raises(ManifestError, match="field 'schema_version'"):
        parse_manifest({"schema_version": 99, "weights": {}}, "m.yaml")


def test_unverified_entry_needs_a_source_page_and_no_hash():
    entry = {"recipe": "r", "verified": False, "format": "safetensors", "files": [{"name": "r.safetensors"}],
             "license": "MIT", "paper": "p"}
    with pytest.raises(ManifestError, match="field 'source_page'"):
        parse_manifest(manifest(entry), "m.yaml")
    entry["source_page"] = "https://example.org/release"
    (e,) = parse_manifest(manifest(entry), "m.yaml").values()
    assert not e.verified and e.files[0].sha256 is None


def test_repository_manifest_is_valid_and_registered(registry):
    path = REPO / "configs" / "weights_manifest.yaml"  # package data of zoo_configs
    own = read_manifest(path)
    assert path.resolve() in {p.resolve() for p, _ in registry.manifest_files}
    assert "weights_manifest" not in registry.recipe_files  # the manifest is not a recipe
    entries = load_entries(registry)
    for name in ("tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k",
                 "mobilenetv2_100.tv_in1k"):
        e = entries[name]
        assert e.verified and e.files[0].upstream is not None and e.files[0].converter
        assert e.files[0].upstream.sources[0].startswith("pypi:")
    for e in own.values():  # every entry belongs to a real recipe, every converter is registered
        assert e.recipe in registry.recipe_files, e.name
        for f in e.files:
            if f.converter:
                assert registry.has("converter", f.converter), (e.name, f.converter)


def test_default_recipe_resolves_to_its_weights(registry):
    from zoo.recipes import get_recipe

    assert entry_for_recipe(get_recipe("default", registry=registry), registry).name == "tf_efficientnet_lite2.in1k"
    cfg = get_recipe("default", ["model.backbone.name=tf_efficientnet_lite0"], registry=registry)
    assert entry_for_recipe(cfg, registry).name == "tf_efficientnet_lite0.in1k"
    cfg = get_recipe("default", ["+weights=mobilenetv2_100.tv_in1k"], registry=registry)
    assert entry_for_recipe(cfg, registry).name == "mobilenetv2_100.tv_in1k"


def test_no_weights_fails_loudly_with_hints(registry):
    from zoo.recipes import get_recipe

    cfg = get_recipe("default", ["model.backbone.name=resnet18"], registry=registry)
    with pytest.raises(NoPretrainedWeightsError, match="No pretrained weights exist for recipe 'default' with backbone 'resnet18'") as err:
        entry_for_recipe(cfg, registry)
    assert "tf_efficientnet_lite0.in1k" in str(err.value)
    with pytest.raises(UnknownWeightsError, match="Close matches: tf_efficientnet_lite0.in1k"):
        get_weights("tf_efficientnet_lite0.in1", registry)


def test_unverified_weights_are_never_loaded(registry):
    import zoo

    with pytest.raises(UnverifiedWeightsError, match="public source only"):
        zoo.create_model("default", pretrained=True, registry=registry,
                         overrides=["+weights=glr2020-3rd-effnet-b3.kaggle"])


def test_conflicting_duplicate_entries_are_an_error(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(manifest(GOOD)))
    b.write_text(yaml.safe_dump(manifest({**GOOD, "embedding_dim": 9})))
    with pytest.raises(ManifestError, match="listed differently in .*a.yaml and .*b.yaml"):
        load_entries(paths=[a, b])
    b.write_text(yaml.safe_dump(manifest(GOOD)))
    assert list(load_entries(paths=[a, b])) == ["arch.tag"]


def test_catalog_parses_each_file_once_and_sees_changes(tmp_path, registry, monkeypatch):
    import os

    import zoo.weights.catalog as catalog

    calls = []
    real = catalog.read_manifest
    monkeypatch.setattr(catalog, "read_manifest", lambda p: calls.append(Path(p)) or real(p))
    catalog._read_cached.cache_clear()
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(manifest(GOOD, "extra.one")))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(extra))
    first = load_entries(registry)
    assert "extra.one" in first and "tf_efficientnet_lite2.in1k" in first
    parsed = len(calls)
    assert parsed == len(registry.manifest_files) + 1
    for _ in range(3):
        assert load_entries(registry) == first
        get_weights("extra.one", registry)
    assert len(calls) == parsed  # cached: nothing re-parsed
    # an edited file is parsed again (size and mtime change)
    extra.write_text(yaml.safe_dump(manifest({**GOOD, "embedding_dim": 16}, "extra.one")))
    os.utime(extra, ns=(1, 10**18))
    assert get_weights("extra.one", registry).embedding_dim == 16
    assert calls[parsed:] == [extra]
    # a changed ZOO_WEIGHTS_MANIFEST is seen at once
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(manifest(GOOD, "other.two")))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(other))
    names = set(load_entries(registry))
    assert "other.two" in names and "extra.one" not in names
    # another registry (here: without the built-in manifest) gives its own entries
    from zoo.registry import Registry

    assert set(load_entries(Registry())) == {"other.two"}


def test_package_manifest_is_found_with_importlib_resources(tmp_path, monkeypatch):
    from zoo.weights.catalog import package_manifest

    path = package_manifest("zoo_configs")
    assert path.name == "weights_manifest.yaml" and path.is_file()
    assert "tf_efficientnet_lite2.in1k" in read_manifest(path)
    pkg = tmp_path / "zoo_nomanifest_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ManifestError, match="package 'zoo_nomanifest_pkg' ships no weights_manifest.yaml"):
        package_manifest("zoo_nomanifest_pkg")
