"""Fetching weights from a local HTTP server: resume, integrity, offline, concurrency, cache, mirror."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from zoo.registry import Registry
from zoo.weights.errors import DownloadError, IntegrityError, WeightsNotFoundError
from zoo.weights.schema import read_manifest
from zoo.weights.safetensors_io import serialize
from zoo.weights.env import cache_path
from zoo.weights.resolve import fetch_entry

pytestmark = pytest.mark.network

PAYLOAD = serialize({"w": torch.arange(100_000, dtype=torch.float32)}, {"format": "zoo"})  # ~400 KB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 123_457  # bytes sent before the "flaky" path drops the connection


class _Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.flaky_failures = 1
        self.busy_failures = 0  # "busy": this many 503 answers before the file
        self.retry_after: str | None = None
        self.slow = 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                name = self.path.lstrip("/").split(".")[0]
                if name == "busy" and outer.busy_failures > 0:
                    outer.busy_failures -= 1
                    self.send_response(503, "Service Unavailable")
                    if outer.retry_after is not None:
                        self.send_header("Retry-After", outer.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = {
                    "good": PAYLOAD, "flaky": PAYLOAD, "slow": PAYLOAD, "busy": PAYLOAD,
                    "short": PAYLOAD[:-1000],
                    "tampered": PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF]),
                    "long": PAYLOAD + b"x" * 5000,
                }.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if name == "flaky" and outer.flaky_failures > 0 and start == 0:
                    outer.flaky_failures -= 1
                    self.wfile.write(body[:CUT])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if name == "slow":
                    for i in range(0, len(body), 32_768):
                        self.wfile.write(body[i:i + 32_768])
                        time.sleep(0.1)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.safetensors"

    def gets(self, name: str) -> list[str | None]:
        return [r for p, r in self.requests if p == f"/{name}.safetensors"]


@pytest.fixture()
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture()
def env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_NO_PROGRESS", "1")
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "10")
    monkeypatch.setenv("ZOO_DOWNLOAD_BACKOFF", "0.05")  # keep the resume tests quick
    return tmp_path


def write_manifest(path: Path, server: _Server, names: list[str], sha: str = SHA, size: int = len(PAYLOAD)) -> Path:
    entries = ""
    for name in names:
        entries += textwrap.dedent(f"""
          test.{name}:
            recipe: default
            format: safetensors
            files:
              - name: test-{name}.safetensors
                sha256: {sha}
                size: {size}
                sources: ["{server.url(name)}"]
            preprocess: {{input_size: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], interpolation: bilinear}}
            embedding_dim: 8
            license: Apache-2.0
            paper: test
        """).replace("\n", "\n  ")
    path.write_text("schema_version: 1\nweights:" + entries + "\n")
    return path


def entry(env: Path, server: _Server, name: str, **kw):  # type: ignore[no-untyped-def]
    return read_manifest(write_manifest(env / f"m-{name}.yaml", server, [name], **kw))[f"test.{name}"]


def test_normal_fetch_is_verified_and_cached(env, server):
    e = entry(env, server, "good")
    (path,) = fetch_entry(e)
    assert path == cache_path("test-good.safetensors", SHA)
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.partial"))
    assert server.gets("good") == [None]


def test_cache_hit_needs_no_network(env, server, monkeypatch):
    e = entry(env, server, "good")
    fetch_entry(e)
    server.httpd.shutdown()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    (path,) = fetch_entry(e)
    assert path.read_bytes() == PAYLOAD
    assert len(server.gets("good")) == 1


def test_interrupted_download_resumes_with_range(env, server):
    e = entry(env, server, "flaky")
    (path,) = fetch_entry(e)
    assert path.read_bytes() == PAYLOAD
    assert server.gets("flaky") == [None, f"bytes={CUT}-"]


def test_interrupted_download_kept_and_resumed_by_next_fetch(env, server, monkeypatch):
    monkeypatch.setenv("ZOO_DOWNLOAD_RETRIES", "0")
    e = entry(env, server, "flaky")
    with pytest.raises(WeightsNotFoundError, match="partial file .* is kept"):
        fetch_entry(e)
    partial = cache_path("test-flaky.safetensors", SHA).with_name("test-flaky.safetensors.partial")
    assert partial.stat().st_size == CUT
    (path,) = fetch_entry(e)
    assert path.read_bytes() == PAYLOAD
    assert server.gets("flaky")[-1] == f"bytes={CUT}-"
    assert not partial.exists()


def test_wrong_size_is_refused_with_sizes_and_path(env, server):
    e = entry(env, server, "short")
    with pytest.raises(IntegrityError) as err:
        fetch_entry(e)
    msg = str(err.value)
    assert f"expected {len(PAYLOAD)} bytes, got {len(PAYLOAD) - 1000} bytes" in msg
    assert "test-short.safetensors.partial" in msg and "truncated" in msg
    assert not cache_path("test-short.safetensors", SHA).exists()


def test_oversized_download_is_stopped(env, server):
    e = entry(env, server, "long")
    with pytest.raises(IntegrityError, match=f"more than the expected {len(PAYLOAD)} bytes"):
        fetch_entry(e)
    assert not cache_path("test-long.safetensors", SHA).exists()


def test_wrong_hash_is_refused_with_both_hashes(env, server):
    e = entry(env, server, "tampered")
    with pytest.raises(IntegrityError) as err:
        fetch_entry(e)
    bad = hashlib.sha256(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])).hexdigest()
    msg = str(err.value)
    assert SHA in msg and bad in msg and "test-tampered.safetensors" in msg
    target = cache_path("test-tampered.safetensors", SHA)
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()


def test_404_names_the_url(env, server):
    e = entry(env, server, "missing")
    with pytest.raises(WeightsNotFoundError, match="HTTP 404") as err:
        fetch_entry(e)
    assert server.url("missing") in str(err.value)


def test_offline_miss_names_file_hash_and_places(env, server, monkeypatch):
    mirror = env / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    e = entry(env, server, "good")
    with pytest.raises(WeightsNotFoundError) as err:
        fetch_entry(e)
    msg = str(err.value)
    assert "ZOO_OFFLINE=1" in msg and "test-good.safetensors" in msg and SHA in msg
    assert str(mirror / "test-good.safetensors") in msg
    assert str(cache_path("test-good.safetensors", SHA)) in msg
    assert f"{server.url('good')} (skipped: ZOO_OFFLINE=1)" in msg
    assert server.requests == []


def test_tampered_cache_file_is_never_returned(env, server, monkeypatch):
    e = entry(env, server, "good")
    (path,) = fetch_entry(e)
    path.write_bytes(PAYLOAD[:-1] + b"\0")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(IntegrityError) as err:
        fetch_entry(e)
    assert "has sha256" in str(err.value) and str(path) in str(err.value)
    monkeypatch.delenv("ZOO_OFFLINE")
    (again,) = fetch_entry(e)  # online it heals from the source
    assert again.read_bytes() == PAYLOAD


def test_explicit_file_is_checked(env, server, tmp_path):
    e = entry(env, server, "good")
    good = tmp_path / "mine.safetensors"
    good.write_bytes(PAYLOAD)
    assert fetch_entry(e, explicit={"test-good.safetensors": good}) == [good]
    good.write_bytes(PAYLOAD[:100])
    with pytest.raises(IntegrityError, match=f"expected {len(PAYLOAD)} bytes, got 100 bytes"):
        fetch_entry(e, explicit={"test-good.safetensors": good})
    assert server.requests == []


def test_two_concurrent_fetchers(env, server):
    manifest = write_manifest(env / "m.yaml", server, ["slow"])
    code = textwrap.dedent(f"""
        from zoo.weights.schema import read_manifest
        from zoo.weights.resolve import fetch_entry
        e = read_manifest({str(manifest)!r})["test.slow"]
        print(fetch_entry(e)[0])
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert paths == {str(cache_path("test-slow.safetensors", SHA))}
    assert Path(paths.pop()).read_bytes() == PAYLOAD
    assert len(server.gets("slow")) == 1  # the second process waited and found the verified file


def test_mirror_export_and_offline_use(env, server, monkeypatch):
    manifest = write_manifest(env / "m.yaml", server, ["good"])
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(manifest))
    from zoo.weights.mirror import export_mirror

    report = export_mirror(env / "mirror", registry=Registry())
    assert report.entries == ["test.good"]
    assert (env / "mirror" / "test-good.safetensors").read_bytes() == PAYLOAD
    assert "test.good" in read_manifest(env / "mirror" / "weights_manifest.yaml")
    # another machine: empty cache, no network, only the mirror
    monkeypatch.setenv("ZOO_CACHE_DIR", str(env / "other-cache"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(env / "mirror"))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(env / "mirror" / "weights_manifest.yaml"))
    from zoo.weights.catalog import get_weights

    (path,) = fetch_entry(get_weights("test.good", registry=Registry()))
    assert path == env / "mirror" / "test-good.safetensors"
    assert len(server.gets("good")) == 1


def test_bad_mirror_copy_is_skipped(env, server, monkeypatch):
    mirror = env / "mirror"
    mirror.mkdir()
    (mirror / "test-good.safetensors").write_bytes(b"junk")
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    (path,) = fetch_entry(entry(env, server, "good"))
    assert path == cache_path("test-good.safetensors", SHA)


def test_download_error_without_sources_left(env, server, monkeypatch):
    from zoo.weights.http_download import download

    monkeypatch.setenv("ZOO_DOWNLOAD_RETRIES", "0")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("nothing"), env / "x.partial", 10, desc="x")


def test_backoff_delays_double_up_to_the_maximum():
    from zoo.weights.http_download import backoff_delay

    assert [backoff_delay(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(1, 0.5, 30.0, retry_after=7.0) == 7.0  # the server's Retry-After wins
    assert backoff_delay(1, 0.5, 5.0, retry_after=700.0) == 5.0  # ... up to the maximum


def test_retries_back_off_exponentially(env, server, monkeypatch):
    from zoo.weights.http_download import download

    waits: list[float] = []
    server.busy_failures = 3
    monkeypatch.setenv("ZOO_DOWNLOAD_BACKOFF", "0.5")
    monkeypatch.setenv("ZOO_DOWNLOAD_BACKOFF_MAX", "1.5")
    n = download(server.url("busy"), env / "busy.partial", len(PAYLOAD), desc="busy", retries=3, sleep=waits.append)
    assert n == len(PAYLOAD) and (env / "busy.partial").read_bytes() == PAYLOAD
    assert waits == [0.5, 1.0, 1.5]  # 0.5 * 2**k, capped at ZOO_DOWNLOAD_BACKOFF_MAX
    assert len(server.gets("busy")) == 4


def test_retry_after_is_honoured_and_real_time_passes(env, server, monkeypatch):
    from zoo.weights.http_download import download

    server.busy_failures = 2
    server.retry_after = "0.6"
    monkeypatch.setenv("ZOO_DOWNLOAD_BACKOFF", "0.2")
    t0 = time.perf_counter()
    download(server.url("busy"), env / "busy.partial", len(PAYLOAD), desc="busy", retries=2)
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.6 + 0.6  # Retry-After (0.6) beats 0.2 and 0.4 for both retries
    server.busy_failures, server.retry_after = 3, None
    (env / "busy.partial").unlink()
    waits: list[float] = []
    with pytest.raises(DownloadError, match=r"failed after 3 attempts \(HTTPError: HTTP Error 503"):
        download(server.url("busy"), env / "busy.partial", len(PAYLOAD), desc="busy", retries=2, sleep=waits.append)
    assert waits == [0.2, 0.4]


def test_lost_connection_resumes_after_a_backoff(env, server, monkeypatch):
    from zoo.weights.http_download import download

    waits: list[float] = []
    server.flaky_failures = 1
    download(server.url("flaky"), env / "flaky.partial", len(PAYLOAD), desc="flaky", retries=1, sleep=waits.append)
    assert waits == [0.05]
    assert server.gets("flaky") == [None, f"bytes={CUT}-"]  # resumed where it broke


@pytest.mark.parametrize("var,value", [("ZOO_DOWNLOAD_RETRIES", "three"), ("ZOO_DOWNLOAD_RETRIES", "-1"),
                                       ("ZOO_DOWNLOAD_BACKOFF", "fast"), ("ZOO_DOWNLOAD_TIMEOUT", "0")])
def test_bad_download_settings_are_one_clear_error(env, server, monkeypatch, var, value):
    from zoo.weights.errors import SettingError
    from zoo.weights.http_download import download

    monkeypatch.setenv(var, value)
    with pytest.raises(SettingError, match=f"{var}={value!r}: must be a"):
        download(server.url("good"), env / "g.partial", len(PAYLOAD), desc="g")
    assert server.requests == []
