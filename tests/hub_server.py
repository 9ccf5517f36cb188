"""A local stand-in for the Hugging Face Hub's file endpoint, for tests (HF_ENDPOINT=http://127.0.0.1:PORT).

huggingface_hub's ``hf_hub_download`` asks ``HEAD {endpoint}/{org}/{repo}/resolve/{revision}/{file}`` for
the commit (``X-Repo-Commit``), the blob's ETag and its size, then GETs the same address and stores the
file in its own cache (``models--org--repo/blobs/<etag>`` + ``snapshots/<commit>/<file>``). This server
answers those two requests from hub-style folders ``ROOT/REPO/FILE`` (the organisation is ignored), the
ETag being the file's sha256 as the Hub gives for LFS files. ``requests`` counts the GETs served.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class HubServer:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _file(self) -> tuple[Path, str] | None:
                parts = unquote(self.path.split("?", 1)[0]).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo, revision, rel = parts[1], parts[3], "/".join(parts[4:])
                path = server.root / repo / rel
                if not path.is_file():
                    return None
                commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
                return path, commit

            def _headers(self, found: tuple[Path, str]) -> None:
                path, commit = found
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", '"' + hashlib.sha256(path.read_bytes()).hexdigest() + '"')
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                found = self._file()
                self._headers(found) if found else self._missing()

            def do_GET(self) -> None:  # noqa: N802
                found = self._file()
                if not found:
                    self._missing()
                    return
                server.requests.append(self.path)
                self._headers(found)
                self.wfile.write(found[0].read_bytes())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
