"""Byte-for-byte reproducible safetensors files.

``safetensors.torch.save_file`` writes the ``__metadata__`` mapping in hash-map order, which
changes from one process to the next, so the same tensors give files with different sha256.
Weights converted on first use are re-hashed against the manifest, so zoo writes them itself:
the header is JSON with sorted keys (metadata first), padded with spaces to 8 bytes as the
format requires, followed by the tensors' little-endian bytes in name order. Any safetensors
reader loads the result.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Mapping

import torch

from zoo.atomic import atomic_path

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def serialize(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors bytes of ``tensors`` with string ``metadata``; identical input, identical bytes."""
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise RuntimeError("deterministic safetensors writing assumes a little-endian machine")
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError(f"tensor '{name}': dtype {t.dtype} cannot be written to safetensors")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_deterministic(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write :func:`serialize` output atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(serialize(tensors, metadata))
