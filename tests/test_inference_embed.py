"""Embed pipeline: shards, resume after kill -9, corrupt images, ensembles, bucketing, memory."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo import atomic
from zoo.data.images import ImageRecord, list_images, read_image
from zoo.inference.embed import EmbedOptions, Embedder, embed_records, embed_to_folder
from zoo.data.config import DataConfig, model_data_configs
from zoo.inference.shards import EmbeddingStore, EmbeddingStoreError

TINY = ["model.backbone.name=mobilenetv2_035", "data.image_size=64"]
#: one intra-op thread: on the shared 2-core box two spinning OpenMP threads are ~20x slower
SUBPROCESS_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_images(folder: Path, n: int, seed: int = 0, sizes=((64, 48), (48, 64), (64, 64))) -> Path:
    """``n`` small JPEGs with distinct smooth random content and a few aspect ratios."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
        img.save(folder / f"img{i:04d}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return zoo.create_model("default", overrides=TINY)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    atomic.save_safetensors(path, {k: v.detach().clone() for k, v in tiny_model.state_dict().items()})
    return path


def test_shards_match_batch_one_descriptors(tmp_path, tiny_model):
    images = make_images(tmp_path / "imgs", 10)
    records = list_images(images)
    report = embed_to_folder(
        tiny_model, records, tmp_path / "emb",
        options=EmbedOptions(batch_size=4, shard_size=4, num_workers=0, progress=False, device="cpu"),
    )
    assert report.num_shards == 3 and report.shards_done == [0, 1, 2] and report.embedded == 10
    ids, emb = EmbeddingStore(tmp_path / "emb").load()
    assert ids == [r.id for r in records]  # input order despite shape buckets
    assert np.allclose((emb**2).sum(1), 1.0, atol=1e-5)
    pre = model_data_configs(tiny_model)[0]
    assert pre.resize == "long_side" and pre.input_size == 64
    tiny_model.eval()
    for i in (0, 1, 5):
        x = pre.normalize(pre.resize_uint8(read_image(records[i].path))[None])
        assert x.shape[-2:] != (64, 64) or i % 3 == 2  # aspect ratio kept for long_side
        with torch.no_grad():
            ref = tiny_model.embed(x)[0].numpy()
        assert np.abs(ref - emb[i]).max() < 1e-4


def test_fp16_storage_and_settings_mismatch(tmp_path, tiny_model):
    records = list_images(make_images(tmp_path / "imgs", 5))
    opts = EmbedOptions(batch_size=8, shard_size=8, num_workers=0, progress=False, device="cpu", fp16=True)
    embed_to_folder(tiny_model, records, tmp_path / "emb", options=opts)
    store = EmbeddingStore(tmp_path / "emb")
    assert store.manifest["dtype"] == "float16"
    _, emb16 = store.read_shard(0, dtype=np.float16)
    assert emb16.dtype == np.float16 and emb16.shape == (5, tiny_model.embedding_dim)
    with pytest.raises(EmbeddingStoreError, match="other settings.*dtype"):
        embed_to_folder(tiny_model, records, tmp_path / "emb",
                        options=EmbedOptions(shard_size=8, num_workers=0, progress=False, device="cpu"))
    report = embed_to_folder(tiny_model, records, tmp_path / "emb", overwrite=True,
                             options=EmbedOptions(shard_size=8, num_workers=0, progress=False, device="cpu"))
    assert report.shards_done == [0] and EmbeddingStore(tmp_path / "emb").manifest["dtype"] == "float32"
    assert EmbeddingStore(tmp_path / "emb").read_shard(0)[1].dtype == np.float32


def test_corrupt_images_are_skipped_and_reported(tmp_path, photo_dir, tiny_model, capsys):
    records = list_images(photo_dir)
    report = embed_to_folder(
        tiny_model, records, tmp_path / "emb",
        options=EmbedOptions(batch_size=4, shard_size=5, num_workers=1, progress=False, device="cpu"),
    )
    bad = sorted(s.id for s in report.skipped)
    assert bad == ["corrupt.jpg", "truncated.jpg"]
    store = EmbeddingStore(tmp_path / "emb")
    ids, emb = store.load()
    assert len(ids) == len(records) - 2 and "corrupt.jpg" not in ids and emb.shape[0] == len(ids)
    assert sorted(s.id for s in store.skipped()) == bad
    assert all("cannot decode" in s.error or "truncated" in s.error.lower() for s in store.skipped())


def test_ensemble_descriptor_layout_through_pipeline(tmp_path, registry):
    """Members at their own sizes, one decode, concat layout = per-member descriptors side by side."""
    from zoo.assembly import ZooEnsemble

    torch.manual_seed(0)
    a = zoo.create_model("default", overrides=TINY, registry=registry)
    b = zoo.create_model("default", overrides=["model.backbone.name=mobilenetv2_050", "data.image_size=48"],
                         registry=registry)
    b.data_config = dataclasses.replace(b.data_config, resize="square")
    cfgs = [{"recipe": "default", "image_size": 64}, {"recipe": "default", "image_size": 48}]
    ens = ZooEnsemble([a, b], cfgs, lambda embs, members: torch.cat(embs, 1))
    records = list_images(make_images(tmp_path / "imgs", 6))
    pre = model_data_configs(ens)
    assert [(p.input_size, p.resize) for p in pre] == [(64, "long_side"), (48, "square")]
    ids, emb, skipped = embed_records(Embedder(ens), records, batch_size=3, num_workers=0)
    assert emb.shape == (6, a.embedding_dim + b.embedding_dim) and not skipped
    _, ea, _ = embed_records(Embedder(a), records, num_workers=0)
    _, eb, _ = embed_records(Embedder(b, [pre[1]]), records, num_workers=0)
    expected = np.concatenate([ea, eb], 1) / np.sqrt(2.0)
    assert np.abs(emb - expected).max() < 1e-4


def test_flip_tta_changes_and_stays_normalised(tmp_path, tiny_model):
    records = list_images(make_images(tmp_path / "imgs", 3))
    _, plain, _ = embed_records(Embedder(tiny_model), records, num_workers=0)
    _, flip, _ = embed_records(Embedder(tiny_model, flip_tta=True), records, num_workers=0)
    assert np.allclose((flip**2).sum(1), 1.0, atol=1e-5)
    assert np.abs(plain - flip).max() > 1e-4


def test_preprocess_resize_modes():
    arr = np.zeros((100, 200, 3), np.uint8)
    assert tuple(DataConfig(64, "long_side").resize_uint8(arr).shape) == (3, 32, 64)
    assert tuple(DataConfig(64, "square").resize_uint8(arr).shape) == (3, 64, 64)
    with pytest.raises(zoo.ZooError, match="resize"):
        DataConfig(64, "crop")
    with pytest.raises(zoo.ZooError, match="interpolation"):
        DataConfig(64, "square", interpolation="bogus")


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import zoo.inference.embed as e
    delay = float(sys.argv[1])
    orig = e.Embedder.__call__
    def slow(self, inputs):
        time.sleep(delay)
        return orig(self, inputs)
    e.Embedder.__call__ = slow
    from zoo.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _embed_cmd(script: Path, delay: float, images: Path, out: Path, ckpt: Path) -> list[str]:
    return [sys.executable, str(script), str(delay), "embed", "default", "--images", str(images),
            "--out", str(out), "--checkpoint", str(ckpt), "--shard-size", "4", "--batch-size", "2",
            "--workers", "0", "--no-progress", "--device", "cpu", *sum((["-o", o] for o in TINY), [])]


@pytest.mark.slow
def test_resume_after_kill(tmp_path, tiny_checkpoint):
    images = make_images(tmp_path / "imgs", 24)
    script = tmp_path / "slow_embed.py"
    script.write_text(RESUME_SCRIPT)
    out = tmp_path / "emb"
    env = SUBPROCESS_ENV
    proc = subprocess.Popen(_embed_cmd(script, 0.4, images, out, tiny_checkpoint), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("shard-*.safetensors"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in out.glob("shard-*.safetensors"))
    assert 2 <= len(done_before) < 6, done_before
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}

    res = subprocess.run(_embed_cmd(script, 0.0, images, out, tiny_checkpoint), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"reused {len(done_before)} finished shards" in res.stdout
    for name, mt in mtimes.items():  # finished shards were not recomputed
        assert (out / name).stat().st_mtime_ns == mt
    assert not list(out.glob(".*.tmp"))
    ids, emb = EmbeddingStore(out).load()
    assert len(ids) == len(set(ids)) == 24

    model = zoo.create_model("default", overrides=TINY, checkpoint=tiny_checkpoint)
    ref_report = embed_to_folder(model, list_images(images), tmp_path / "ref",
                                 options=EmbedOptions(batch_size=2, shard_size=4, num_workers=0, progress=False, device="cpu"))
    assert ref_report.embedded == 24
    ref_ids, ref = EmbeddingStore(tmp_path / "ref").load()
    assert ref_ids == ids
    assert np.abs(ref - emb).max() < 1e-5


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import numpy as np, torch
    import zoo
    from zoo.data.images import ImageRecord
    from zoo.inference.embed import EmbedOptions, embed_to_folder
    src, n, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    files = sorted(src.glob("*.jpg"))
    # the same small files listed many times: a 10x gallery without 10x disk
    records = [ImageRecord(f"{i:07d}", files[i % len(files)]) for i in range(n)]
    model = zoo.create_model("default", overrides=["model.backbone.name=mobilenetv2_035", "data.image_size=32"])
    r = embed_to_folder(model, records, out, options=EmbedOptions(batch_size=16, shard_size=64,
                        num_workers=0, progress=False, device="cpu"))
    print(json.dumps({"n": r.embedded, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


@pytest.mark.slow
def test_peak_memory_flat_at_10x_images(tmp_path):
    images = make_images(tmp_path / "imgs", 20, sizes=((32, 32),))
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    peaks = {}
    for n in (100, 1000):
        res = subprocess.run([sys.executable, str(script), str(images), str(n), str(tmp_path / f"emb{n}")],
                             capture_output=True, text=True, timeout=600, env=SUBPROCESS_ENV)
        assert res.returncode == 0, res.stderr
        data = json.loads(res.stdout.strip().splitlines()[-1])
        assert data["n"] == n
        peaks[n] = data["maxrss_kb"]
    assert peaks[1000] <= 1.10 * peaks[100], peaks


def test_ranks_write_disjoint_shards(tmp_path, tiny_model):
    """torchrun: rank r of W writes shards r, r+W, ...; together they equal a single-process run."""
    from zoo.distributed import DistContext

    records = list_images(make_images(tmp_path / "imgs", 9))
    opts = EmbedOptions(batch_size=4, shard_size=2, num_workers=0, progress=False, device="cpu")
    r1 = embed_to_folder(tiny_model, records, tmp_path / "emb", options=opts, dist=DistContext(1, 2, 0))
    assert r1.shards_done == [1, 3]
    store = EmbeddingStore(tmp_path / "emb")
    assert store.missing_shards() == [0, 2, 4]
    with pytest.raises(EmbeddingStoreError, match="Run the same `zoo embed` command again"):
        store.load()
    r0 = embed_to_folder(tiny_model, records, tmp_path / "emb", options=opts, dist=DistContext(0, 2, 0))
    assert r0.shards_done == [0, 2, 4]
    ids, emb = EmbeddingStore(tmp_path / "emb").load()
    ref_ids, ref, _ = embed_records(Embedder(tiny_model), records, num_workers=0)
    assert ids == ref_ids == [r.id for r in records]
    assert np.abs(emb - ref).max() < 1e-5


@pytest.mark.parametrize("command", ["embed", "index", "search", "recognize", "retrieve", "demo"])
def test_commands_have_help(command, capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: zoo {command}" in capsys.readouterr().out
