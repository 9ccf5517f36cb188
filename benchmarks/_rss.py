"""Process memory for the benchmarks (Linux ``/proc``): reset the peak RSS, read the peak since."""

from __future__ import annotations

from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> int:
    """Reset the peak RSS (Linux) and return the current RSS in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def peak_extra_mb(base_kb: int) -> float:
    """MB of peak RSS above ``base_kb`` (from :func:`reset_peak`)."""
    return max(0, _status_kb("VmHWM") - base_kb) / 1024
