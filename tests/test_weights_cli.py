"""``zoo weights`` list / fetch / verify / export-mirror, and an offline machine using the mirror."""

from __future__ import annotations

import pytest


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.setenv("ZOO_NO_PROGRESS", "1")
    return tmp_path / "cache"


@pytest.mark.parametrize("action", ["list", "fetch", "verify", "export-mirror", "convert"])
def test_every_action_has_help(action, capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["weights", action, "--help"])
    assert exc.value.code == 0
    assert "usage: zoo weights " + action in capsys.readouterr().out


def test_list_by_pattern(capsys, cache):
    from zoo.cli import main

    assert main(["weights", "list", "tf_efficientnet_lite*"]) == 0
    assert capsys.readouterr().out.split() == [f"tf_efficientnet_lite{n}.in1k" for n in range(3)]
    assert main(["weights", "list", "--long", "--verified"]) == 0
    out = capsys.readouterr().out
    assert "mobilenetv2_100.tv_in1k" in out and "unverified" not in out
    assert main(["weights", "list", "nothing*"]) == 1


def test_fetch_verify_and_offline_mirror(tmp_path, capsys, cache, monkeypatch):
    from zoo.cli import main

    name = "tf_efficientnet_lite2.in1k"  # the default recipe's weights
    assert main(["weights", "fetch", name, "--to", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / f"{name}.safetensors")
    assert main(["weights", "verify", name]) == 0
    assert " ok " in capsys.readouterr().out
    mirror = tmp_path / "mirror"
    assert main(["weights", "export-mirror", str(mirror), name]) == 0
    assert (mirror / f"{name}.safetensors").is_file() and (mirror / "weights_manifest.yaml").is_file()
    # tamper with the cached copy: verify reports it and exits 1
    from zoo.weights.catalog import get_weights
    from zoo.weights.env import cache_path

    wf = get_weights(name).files[0]
    cached = cache_path(wf.name, wf.sha256)
    cached.write_bytes(cached.read_bytes()[:-5] + b"12345")
    capsys.readouterr()
    assert main(["weights", "verify", name]) == 1
    assert "corrupt" in capsys.readouterr().out
    # a machine with an empty cache and no network loads the default recipe from the mirror alone
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    import zoo

    model = zoo.create_model("default", pretrained=True)
    assert model.weights_entry == name
    assert not (tmp_path / "empty-cache").exists()  # nothing converted or downloaded
