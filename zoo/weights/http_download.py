"""Streaming HTTP(S) downloads into a ``.partial`` file, resumed with ``Range`` requests.

The caller holds the file lock and checks size and sha256 afterwards; this module only moves bytes.
A connection that drops mid-file keeps the partial file and is resumed (``Range: bytes=N-``) up to
``retries`` times in the same call, and again by the next call. A server that ignores ``Range``
(answers 200) restarts the file from zero. More bytes than the manifest declares stop the
transfer at once.

Retries back off exponentially: before retry ``n`` (1-based) the call waits
``ZOO_DOWNLOAD_BACKOFF * 2**(n-1)`` seconds (default 1, 2, 4, ...), at most
``ZOO_DOWNLOAD_BACKOFF_MAX`` (default 30). Lost connections, timeouts and the temporary HTTP
statuses (408, 425, 429, 500, 502, 503, 504) are retried; a server's ``Retry-After`` (seconds) is
honoured up to the same maximum. Other HTTP errors (404, 403, ...) fail at once. The loop is kept
by hand because it also resumes the partial file between attempts.
"""

from __future__ import annotations

import http.client
import logging
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from zoo.weights.env import download_backoff, download_retries, download_timeout, progress_enabled
from zoo.weights.errors import DownloadError, IntegrityError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
#: HTTP statuses that say "try again later"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def backoff_delay(retry: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): ``base * 2**(retry-1)``, at most ``cap``;
    a longer ``retry_after`` (the server's ``Retry-After``) wins, also at most ``cap``."""
    delay = base * 2 ** (retry - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: the exponential delay applies


def _progress(total: int | None, initial: int, desc: str):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
        disable=not progress_enabled(), leave=False,
    )


def download(
    url: str,
    partial: Path,
    expected_size: int | None,
    *,
    desc: str,
    retries: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Fetch ``url`` into ``partial`` (resuming what is there); returns the number of bytes now in it.

    ``retries``: attempts after the first (default ``ZOO_DOWNLOAD_RETRIES``), each after an
    exponential back-off (see the module docstring); ``sleep`` waits (replaceable in tests).
    """
    if retries is None:
        retries = download_retries()
    base, cap = download_backoff()
    partial.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    retry_after: float | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff_delay(attempt, base, cap, retry_after)
            log.warning("%s: retry %d of %d in %.1f s", url, attempt, retries, delay)
            sleep(delay)
            retry_after = None
        have = partial.stat().st_size if partial.exists() else 0
        if expected_size is not None and have > expected_size:
            log.warning("%s: %d bytes is more than the expected %d; starting over", partial, have, expected_size)
            partial.unlink()
            have = 0
        if expected_size is not None and have == expected_size:
            return have
        headers = {"User-Agent": "zoo-weights/1", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            log.info("resuming %s at byte %d", url, have)
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=download_timeout())
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                return have  # nothing more to read: the size check decides
            if exc.code not in RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
            retry_after = _retry_after(exc)
            log.warning("%s: HTTP %d %s (attempt %d of %d)", url, exc.code, exc.reason, attempt + 1, retries + 1)
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last_error = exc
            log.warning("%s: %s (attempt %d of %d)", url, exc, attempt + 1, retries + 1)
            continue
        with resp:
            mode = "wb"
            if have and resp.status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == have:
                    mode = "ab"
                else:
                    have = 0
            else:
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else expected_size
            received = have
            try:
                with open(partial, mode) as f, _progress(expected_size or total, have, desc) as bar:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        received += len(chunk)
                        if expected_size is not None and received > expected_size:
                            f.close()
                            partial.unlink(missing_ok=True)
                            raise IntegrityError(
                                f"{url} sends more than the expected {expected_size} bytes (got {received} so far); "
                                f"wrong file, refused (partial {partial} removed)"
                            )
                        f.write(chunk)
                        bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as exc:
                last_error = exc
                log.warning(
                    "%s: connection lost after %d bytes (%s); %s", url, received, type(exc).__name__,
                    "resuming" if attempt < retries else "giving up",
                )
                continue
            if total is not None and received < total and length:
                last_error = DownloadError(f"short read: {received} of {total} bytes")
                continue
            log.info("downloaded %s (%d bytes)", url, received)
            return received
    raise DownloadError(
        f"{url}: download failed after {retries + 1} attempts ({type(last_error).__name__}: {last_error}); "
        f"the partial file {partial} is kept and the next fetch resumes it"
    )
