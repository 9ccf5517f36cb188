"""Registration: lazy ``"module:attribute"`` factories and explicit, checked metadata keys."""

from __future__ import annotations

import sys
import textwrap

import pytest

from zoo import hookimpl
from zoo.plugins import load_registry
from zoo.registry import (
    META_KEYS,
    ComponentImportError,
    ComponentRegistrar,
    PluginInfo,
    RegistrationError,
    Registry,
)

OWNER = PluginInfo("toy", "toy-dist", "1.0")


def _registrar(kind: str = "pooling") -> ComponentRegistrar:
    return ComponentRegistrar(Registry(), kind, OWNER)


@pytest.fixture()
def lazy_module(tmp_path, monkeypatch):
    """A module on sys.path that records being imported."""
    (tmp_path / "zoo_lazy_probe.py").write_text(textwrap.dedent('''
        IMPORTED = True

        def make(width=3):
            """make docstring (not read)"""
            return ("made", width)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zoo_lazy_probe", raising=False)
    yield "zoo_lazy_probe"
    sys.modules.pop("zoo_lazy_probe", None)


def test_a_reference_is_imported_on_first_create_only(lazy_module):
    r = _registrar()
    r.add("probe", f"{lazy_module}:make", description="a lazily imported pooling")
    entry = r._registry.get("pooling", "probe")
    assert lazy_module not in sys.modules, "registering must not import the factory's module"
    assert entry.description == "a lazily imported pooling" and entry.reference == f"{lazy_module}:make"
    assert entry.to_dict()["factory"] == f"{lazy_module}:make"
    assert r._registry.create("pooling", "probe", width=5) == ("made", 5)
    assert lazy_module in sys.modules and entry.factory is entry.factory  # resolved once, cached


@pytest.mark.parametrize("ref, match", [
    ("zoo_lazy_probe.make", "not of the form 'package.module:attribute'"),
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'"),
    ("zoo_lazy_probe:", "not of the form"),
])
def test_malformed_references_fail_at_registration(lazy_module, ref, match):
    with pytest.raises(RegistrationError, match=match):
        _registrar().add("probe", ref, description="x")


def test_a_reference_needs_a_description(lazy_module):
    with pytest.raises(RegistrationError, match="give description="):
        _registrar().add("probe", f"{lazy_module}:make")


def test_a_missing_attribute_is_a_clear_error_when_built(lazy_module):
    r = _registrar()
    r.add("probe", f"{lazy_module}:nope", description="x")
    with pytest.raises(ComponentImportError, match=r"pooling 'probe' of plugin 'toy' \(toy-dist 1\.0\).*has no 'nope'"):
        r._registry.create("pooling", "probe")


@pytest.mark.parametrize("meta, match", [
    ({"test_kwarg": {}}, r"unknown metadata key 'test_kwarg'. Did you mean: test_kwargs"),
    ({"prodcues": "ranking"}, r"unknown metadata key 'prodcues'. Did you mean: produces"),
    ({"produces": "ranking"}, r"'produces' applies to postprocessor only"),
])
def test_misspelt_or_misplaced_metadata_keys_are_rejected(meta, match):
    with pytest.raises(RegistrationError, match=match):
        _registrar("pooling").add("x", dict, description="x", **meta)


def test_metadata_values_are_checked():
    with pytest.raises(RegistrationError, match=r"produces='recogntion' is not one of 'recognition', 'ranking'"):
        _registrar("postprocessor").add("x", dict, description="x", produces="recogntion")
    entry = _registrar("postprocessor")
    entry.add("ok", dict, description="x", produces="ranking", system="glr2021-1st", test_kwargs={})


def test_a_plugin_with_a_misspelt_key_fails_to_load_and_says_why():
    class Typo:
        @hookimpl
        def zoo_register_heads(self, registrar):
            registrar.add("h", dict, description="x", ouptut="logits")

    reg = load_registry([("typo", Typo())], entry_points=False)
    [failed] = reg.report.failed
    assert "RegistrationError" in failed.error and "Did you mean: output" in failed.error


def test_every_builtin_entry_uses_documented_metadata(registry):
    for entry in registry.entries():
        assert set(entry.meta) <= set(META_KEYS), (entry.kind, entry.name, entry.meta)


def test_postprocessor_names_match_their_classes(registry):
    """Registered names are written out in the plugin (no import at registration); the classes agree."""
    for entry in registry.entries("postprocessor"):
        assert getattr(entry.factory, "name", entry.name) == entry.name
