"""Every ``zoo`` command and every python snippet in README.md's fenced code blocks runs.

The convention (for whoever edits README.md):

* **What runs.** Fenced blocks are read in README order. In ``bash``/``sh``/``shell``/``console``
  blocks, every command whose first word is ``zoo`` (also ``.venv/bin/zoo``, ``python -m zoo``,
  ``.venv/bin/python -m zoo``) runs; a line is split at ``&&``, ``||`` and ``;``, comments and
  ``\\`` continuations are handled as the shell does. Other commands (``python3 -m venv``,
  ``pip install``, ``pytest``) are setup and are not run here: the wheel test
  (``tests/test_weights_wheel.py``) and ``.ci/run`` cover installing. ``python`` blocks run in README
  order in one shared namespace (as a reader's session would), with ``zoo`` and ``torch`` imported and
  ``x`` defined as a ``2 x 3 x 224 x 224`` float batch of two real photos (normalised), since a snippet
  shows a model called "on your images". Blocks in other languages (``toml``, ``yaml``, none) do not run.
* **Where.** In a workspace laid out the way the examples name things (:mod:`cli_workspace`:
  ``train/`` an image-folder tree, ``train.csv``/``val.csv`` (``id,landmark_id``), ``test/``,
  ``photos/``, ``solution.csv``, ``guie.safetensors``, ``../shared/data/instance-eval`` with its
  ``labels.csv``), offline (``ZOO_OFFLINE=1``), on the CPU. An absolute path that does not exist (an
  output such as ``/mnt/mirror``) is put inside the workspace (``mnt/mirror``).
* **Tiny settings.** The settings of :data:`cli_workspace.TINY` for the command (``data.image_size=64``,
  ``--max-steps 2``, ...) and :data:`cli_workspace.EXTRA` for the command's start are appended to every
  command (recipe overrides and repeated options: the last one wins), so a README command stays the
  one a user types.
* **Directives**: HTML comments (invisible on GitHub) on the lines right above a fence, one per line:

  - ``<!-- test: skip REASON -->``: the block does not run (say why, e.g. "needs your b5.pth");
  - ``<!-- test: append [COMMAND:] ARGS -->``: ARGS appended to every ``zoo`` command of the block (only
    to ``zoo COMMAND ...`` with ``COMMAND:``), for a command that would take long even with the tiny
    settings, e.g. ``<!-- test: append train: train.epochs=1 -->``;
  - ``<!-- test: setup CODE -->``: python run in the shared namespace before the block.

Each command and each python block is one test case, named by its README line. A command must exit
0 and write what its ``--out`` names; a python block must not raise. :data:`KNOWN_BROKEN` lists the
README lines that do not run yet (strict xfail, so a fixed line must leave the list).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_workspace import EXTRA, TINY, build_workspace, offline  # noqa: F401 - offline: a fixture

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
ZOO_PREFIXES = (["zoo"], [".venv/bin/zoo"], ["python", "-m", "zoo"], ["python3", "-m", "zoo"],
                [".venv/bin/python", "-m", "zoo"])
DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(skip|append|setup)\b\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")

#: README text (a command, or a python block's first line) -> why it does not run yet. Strict xfail:
#: when the README line is fixed or removed, its entry must go.
KNOWN_BROKEN: dict[str, str] = {
    "zoo index emb/ --out gallery.faiss": "an index is a folder: --out index/ (issue 11.14)",
    "zoo search gallery.faiss --query emb/ -k 100": "reads the index the line above cannot write (--out index/)",
    "zoo retrieve / zoo recognize / zoo evaluate": "three command names on one line, not a command",
    "zoo export guie2022-2nd-vith14-64d --format torchscript --out model.pt":
        "the GUIE recipe has no verified weights offline: needs --checkpoint",
    "zoo weights convert b5.pth --from glr2020-3rd --recipe glr2020-3rd-effnet-b5 --out b5.safetensors":
        "needs the upstream b5.pth",
    'model = zoo.create_model("default", pretrained=True)              # through the manifest':
        "its second line loads b5.safetensors, which the convert line above cannot write",
    'reg = zoo.plugins.load_registry(plugins=[("mine", my_plugin_module)])':
        "my_plugin_module is the reader's own module",
}


@dataclass
class Example:
    """A ``zoo`` command or a python block of the README, with the directives of its block."""

    kind: str  # "zoo" or "python"
    line: int  # README line of the command / the block's first line
    text: str  # the command as written, or the block's code
    args: list[str] = field(default_factory=list)  # zoo: the arguments after "zoo"
    append: list[tuple[str | None, list[str]]] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    skip: str | None = None

    @property
    def key(self) -> str:
        return self.text if self.kind == "zoo" else self.text.strip().splitlines()[0]

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.kind}-" + re.sub(r"\s+", "_", self.key)[:60]


def _split_commands(line: str) -> list[list[str]]:
    """Shell words of each command of ``line`` (split at ``&&``, ``||``, ``;``; comments dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    commands, current = [], []
    for token in lex:
        if token in ("&&", "||", ";", "|", "&"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def _zoo_args(words: list[str]) -> list[str] | None:
    for prefix in ZOO_PREFIXES:
        if words[: len(prefix)] == prefix and len(words) > len(prefix):
            return words[len(prefix):]
    return None


def read_examples(text: str) -> list[Example]:
    """The README's runnable examples, with their blocks' directives (see the module docstring)."""
    lines = text.splitlines()
    examples: list[Example] = []
    pending: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if m:
            pending.append((m.group(1), m.group(2)))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                pending = []  # directives belong to the fence right below them
            i += 1
            continue
        marker, lang = fence.group(2), fence.group(3).lower()
        start = i + 1
        end = next((j for j in range(start, len(lines)) if lines[j].strip().startswith(marker)), len(lines))
        body = lines[start:end]
        skip = next((arg or "no reason given" for kind, arg in pending if kind == "skip"), None)
        setup = [arg for kind, arg in pending if kind == "setup"]
        append = []
        for kind, arg in pending:
            if kind == "append":
                command, sep, rest = arg.partition(":")
                scoped = bool(sep) and re.fullmatch(r"[\w-]+", command.strip() or "-") is not None
                append.append((command.strip() if scoped else None, shlex.split(rest if scoped else arg)))
        if lang in SHELL_LANGS:
            logical, first = "", None
            for n, raw in enumerate(body, start=start + 1):
                first = first or n
                if raw.rstrip().endswith("\\"):
                    logical += raw.rstrip()[:-1] + " "
                    continue
                logical += raw
                for words in _split_commands(logical):
                    args = _zoo_args(words)
                    if args is not None:
                        examples.append(Example("zoo", first, shlex.join(["zoo", *args]), args, append, setup, skip))
                logical, first = "", None
        elif lang in ("python", "py", "python3"):
            examples.append(Example("python", start + 1, "\n".join(body), [], append, setup, skip))
        pending = []
        i = end + 1
    return examples


EXAMPLES = read_examples(README.read_text()) if README.is_file() else []


def _reroot(args: list[str], work: Path) -> list[str]:
    """Absolute paths that do not exist (outputs such as /mnt/mirror) go inside the workspace."""
    return [a.lstrip("/") if a.startswith("/") and not Path(a).exists() else a for a in args]


def _extra(example: Example) -> list[str]:
    command = example.args[0]
    extra = list(TINY.get(command, []))
    extra += next((v for k, v in EXTRA.items() if example.text.startswith(k)), [])
    for scope, words in example.append:
        if scope is None or scope == command:
            extra += words
    return extra


def _outputs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, photo_paths) -> Path:
    return build_workspace(tmp_path_factory.mktemp("readme"), photo_paths)


@pytest.fixture(scope="module")
def namespace(photo_paths) -> dict:
    """The python blocks' shared namespace: ``zoo``, ``torch`` and ``x`` (two real photos)."""
    import numpy as np
    import torch
    from PIL import Image

    import zoo

    photos = [np.asarray(Image.open(photo_paths[n]).convert("RGB").resize((224, 224))) for n in ("chelsea", "coffee")]
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    return {"__name__": "readme", "zoo": zoo, "torch": torch, "x": x}


def test_readme_has_examples():
    """The README shows both kinds, and the parser finds what it shows (the demo command first)."""
    kinds = {e.kind for e in EXAMPLES}
    assert kinds == {"zoo", "python"}
    assert EXAMPLES[0].kind == "zoo" and EXAMPLES[0].args[0] == "demo"
    stale = [k for k in KNOWN_BROKEN if k not in {e.key for e in EXAMPLES}]
    assert not stale, f"KNOWN_BROKEN names README lines that are gone: {stale}"


def test_directives_are_read():
    text = "\n".join([
        "<!-- test: skip needs your b5.pth -->", "```bash", "zoo embed default --images a/ --out b/", "```", "",
        "<!-- test: append train: train.epochs=1 -->", "<!-- test: append --device cpu -->",
        "<!-- test: setup y = 1 -->", "```sh", "python3 -m venv .venv && .venv/bin/zoo train default-finetune \\",
        "  --data t.csv --out r/   # a comment", "pip install x; zoo weights list", "```",
        "text", "<!-- test: skip stale -->", "", "paragraph", "```python", "print(y)", "```", "```toml", "a = 1", "```",
    ])
    ex = read_examples(text)
    assert [(e.kind, e.line, e.text) for e in ex] == [
        ("zoo", 3, "zoo embed default --images a/ --out b/"),
        ("zoo", 10, "zoo train default-finetune --data t.csv --out r/"),
        ("zoo", 12, "zoo weights list"),
        ("python", 19, "print(y)"),
    ]
    assert ex[0].skip == "needs your b5.pth" and ex[1].skip is None and ex[3].skip is None
    assert ex[1].append == [("train", ["train.epochs=1"]), (None, ["--device", "cpu"])] and ex[1].setup == ["y = 1"]
    assert _extra(ex[1])[-3:] == ["train.epochs=1", "--device", "cpu"] and "train.epochs=1" not in _extra(ex[2])


def _params() -> list:
    """One case per example; known-broken README lines are strict expected failures."""
    out = []
    for e in EXAMPLES:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[e.key])] if e.key in KNOWN_BROKEN else []
        out.append(pytest.param(e, id=e.id, marks=marks))
    return out


@pytest.mark.parametrize("example", _params())
def test_readme_example_runs(example, workspace, namespace, offline, monkeypatch, capsys):
    if example.skip:
        pytest.skip(f"README: {example.skip}")
    monkeypatch.chdir(workspace)
    run_example(example, workspace, namespace, capsys)


def run_example(example: Example, work: Path, namespace: dict, capsys) -> None:
    for code in example.setup:
        exec(compile(code, f"README.md:{example.line} (setup)", "exec"), namespace)
    if example.kind == "python":
        exec(compile(example.text, f"README.md:{example.line}", "exec"), namespace)
        return
    from zoo.cli import main

    args = _reroot(example.args, work) + _extra(example)
    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, f"README.md:{example.line}: {example.text} -> exit {rc}\n{out}\n{err[-3000:]}"
    for path in _outputs(_reroot(example.args, work)):
        assert (work / path).exists(), f"README.md:{example.line}: {example.text} did not write {path}"
