"""Plugin loading: isolation, duplicates, strict/disable switches, real entry points, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

import zoo
from zoo import hookimpl
from zoo.hookspecs import COMPONENT_HOOKS
from zoo.plugins import PluginLoadError, load_registry
from zoo.registry import DuplicateComponentError, UnknownComponentError


class Identityish(nn.Module):
    num_features = 3
    output_fmt = "NCHW"

    def forward(self, x):
        return x


class PluginA:
    @hookimpl
    def zoo_register_backbones(self, registrar):
        registrar.add("toy", Identityish, description="a toy backbone")

    @hookimpl
    def zoo_register_heads(self, registrar):
        registrar.add("toy_head", nn.Identity, description="a toy head")


class PluginSameName:
    @hookimpl
    def zoo_register_backbones(self, registrar):
        registrar.add("toy", Identityish)


class PluginRaisingInHook:
    @hookimpl
    def zoo_register_heads(self, registrar):
        registrar.add("half_registered", nn.Identity)

    @hookimpl
    def zoo_register_losses(self, registrar):
        raise RuntimeError("boom in hook")


class PluginBadHookName:
    @hookimpl
    def zoo_register_backbone(self, registrar):  # typo: not a hookspec
        registrar.add("never", nn.Identity)


def test_inline_plugins_register_with_provenance():
    reg = load_registry([("a", PluginA())], entry_points=False)
    entry = reg.get("backbone", "toy")
    assert entry.owner.name == "a"
    assert entry.description == "a toy backbone"
    assert reg.names("head") == ["toy_head"]
    loaded = reg.report.plugin("a")
    assert loaded is not None and loaded.registered == {"backbone": ["toy"], "head": ["toy_head"]}


def test_duplicate_name_fails_the_second_plugin_and_names_both_owners():
    reg = load_registry([("a", PluginA()), ("b", PluginSameName())], entry_points=False)
    assert [p.info.name for p in reg.report.loaded] == ["a"]
    [failed] = reg.report.failed
    assert failed.name == "b" and "DuplicateComponentError" in failed.error
    assert "plugin 'a'" in failed.error and "plugin 'b'" in failed.error
    assert reg.get("backbone", "toy").owner.name == "a"


def test_duplicate_raises_directly_from_registrar():
    from zoo.registry import ComponentRegistrar, PluginInfo, Registry

    reg = Registry()
    r1 = ComponentRegistrar(reg, "head", PluginInfo("one", "dist-one", "1.0"))
    r2 = ComponentRegistrar(reg, "head", PluginInfo("two", "dist-two", "2.0"))
    r1.add("x", nn.Identity)
    with pytest.raises(DuplicateComponentError, match=r"dist-one 1\.0.*dist-two 2\.0"):
        r2.add("x", nn.Identity)


def test_exception_in_hook_rolls_back_that_plugin_only():
    reg = load_registry([("bad", PluginRaisingInHook()), ("a", PluginA())], entry_points=False)
    assert not reg.has("head", "half_registered"), "the failed plugin's entries must be rolled back"
    assert reg.has("backbone", "toy")
    [failed] = reg.report.failed
    assert failed.name == "bad" and failed.stage == "register" and "boom in hook" in failed.error
    assert "boom in hook" in failed.traceback


def test_unknown_hook_name_is_attributed_to_its_plugin():
    reg = load_registry([("typo", PluginBadHookName()), ("a", PluginA())], entry_points=False)
    [failed] = reg.report.failed
    assert failed.name == "typo" and failed.stage == "validate"
    assert reg.has("backbone", "toy")


def test_strict_mode_raises_the_first_failure(monkeypatch):
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'bad'.*boom in hook"):
        load_registry([("bad", PluginRaisingInHook()), ("a", PluginA())], entry_points=False)


def test_disable_and_only_switches(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "a, other")
    reg = load_registry([("a", PluginA())], entry_points=False)
    assert not reg.has("backbone", "toy")
    assert reg.report.skipped[0].name == "a" and "ZOO_DISABLE_PLUGINS" in reg.report.skipped[0].reason
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "b")
    reg = load_registry([("a", PluginA())], entry_points=False)
    assert reg.report.loaded == [] and "ZOO_LOAD_PLUGINS" in reg.report.skipped[0].reason


def test_unknown_component_lists_close_matches_and_failed_plugins():
    reg = load_registry([("a", PluginA()), ("bad", PluginRaisingInHook())], entry_points=False)
    with pytest.raises(UnknownComponentError) as err:
        reg.get("backbone", "toyy")
    msg = str(err.value)
    assert "Close matches: toy" in msg
    assert "bad: RuntimeError: boom in hook" in msg
    with pytest.raises(UnknownComponentError, match="unknown component kind 'backbones'.*backbone"):
        reg.get("backbones", "toy")


def test_fresh_manager_per_call_has_no_global_side_effects():
    r1 = load_registry([("a", PluginA())], entry_points=False)
    r2 = load_registry([], entry_points=False)
    assert r1.has("backbone", "toy") and not r2.has("backbone", "toy")


def test_every_hookspec_is_documented_and_mapped():
    from zoo import hookspecs

    specs = [n for n in dir(hookspecs) if n.startswith("zoo_register_")]
    assert set(COMPONENT_HOOKS) | {"zoo_register_recipes", "zoo_register_weight_manifests"} == set(specs)
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


# -- real entry points from distributions on sys.path ---------------------------------------

def _write_dist(root: Path, dist: str, version: str, module: str, body: str, ep_name: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{ep_name} = {module}\n")


GOOD_PLUGIN = """
from torch import nn
from zoo import hookimpl

@hookimpl
def zoo_register_necks(registrar):
    registrar.add("tp_neck", lambda in_features, out_features: nn.Linear(in_features, out_features),
                  description="third-party neck")
"""


def test_real_entry_points_dedup_and_broken_import(tmp_path, monkeypatch):
    _write_dist(tmp_path / "site1", "zoo-thirdparty", "0.3.1", "zoo_tp_good", GOOD_PLUGIN, "tp")
    _write_dist(tmp_path / "site2", "zoo-thirdparty", "0.3.1", "zoo_tp_good", GOOD_PLUGIN, "tp")
    _write_dist(tmp_path / "site1", "zoo-broken", "9.9", "zoo_tp_broken",
                "raise ImportError('missing dependency: frobnicate')\n", "broken")
    monkeypatch.syspath_prepend(str(tmp_path / "site2"))
    monkeypatch.syspath_prepend(str(tmp_path / "site1"))
    reg = load_registry(only=("tp", "broken"))
    entry = reg.get("neck", "tp_neck")
    assert (entry.owner.name, entry.owner.dist, entry.owner.version) == ("tp", "zoo-thirdparty", "0.3.1")
    assert [p.info.name for p in reg.report.loaded] == ["tp"], "a distribution seen twice loads once"
    [failed] = reg.report.failed
    assert failed.name == "broken" and failed.stage == "import" and "frobnicate" in failed.error
    assert failed.dist == "zoo-broken"


def test_cli_keeps_working_with_a_broken_third_party_plugin(tmp_path):
    _write_dist(tmp_path / "site", "zoo-broken", "9.9", "zoo_tp_broken",
                "raise RuntimeError('broken at import')\n", "broken")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    env.pop("ZOO_STRICT_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "zoo", "plugins", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    failed = {f["name"]: f for f in data["failed"]}
    assert "broken" in failed and "broken at import" in failed["broken"]["error"]
    loaded = {p["name"]: p for p in data["loaded"]}
    assert "recipes" in loaded and loaded["recipes"]["dist"] == "instance-zoo"
    out = subprocess.run([sys.executable, "-m", "zoo", "components", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout), "other plugins' components are still listed"
    strict = subprocess.run([sys.executable, "-m", "zoo", "recipes"], capture_output=True, text=True,
                            env=dict(env, ZOO_STRICT_PLUGINS="1", ZOO_LOAD_PLUGINS="broken,recipes"),
                            timeout=120)
    assert strict.returncode != 0 and "broken at import" in strict.stderr


def test_builtin_plugins_come_from_entry_points(registry):
    loaded = {p.info.name: p for p in registry.report.loaded}
    assert {"recipes", "backbones", "pooling", "heads", "losses"} <= set(loaded)
    assert all(p.info.dist == "instance-zoo" for n, p in loaded.items() if n in {"recipes", "heads"})
    assert registry.report.failed == [], [f.error for f in registry.report.failed]


def test_public_api_names():
    for name in ("list_recipes", "get_recipe", "list_components", "create_model", "hookimpl", "plugins"):
        assert hasattr(zoo, name)
    assert callable(zoo.plugins.report)
