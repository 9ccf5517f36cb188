"""``zoo weights publish RUN_DIR --name ARCH.TAG --to DIR``: a trained run's weights as a release.

Afterwards ``DIR`` holds::

    DIR/weights_manifest.yaml     every entry published into DIR (ZOO_WEIGHTS_MANIFEST=DIR/weights_manifest.yaml)
    DIR/ARCH.TAG.safetensors      the weights, where a mirror keeps them (ZOO_WEIGHTS_MIRROR=DIR)
    DIR/ARCH.TAG/                 a Hugging Face hub-style repository (upload it as ORG/REPO, e.g. with
        model.safetensors         ``hf upload ORG/REPO DIR/ARCH.TAG``): the same file (a hard link where
        config.json               the file system allows), the entry as JSON, the model card and the
        README.md                 entry alone as a manifest
        weights_manifest.yaml

The entry (:mod:`zoo.weights.schema`) lists the file's full sha256 and size, the run's recipe and the
resolved config it was trained with (real head size), its label map, its preprocessing (the model's
:class:`~zoo.data.config.DataConfig`), the run's validation metrics for the published epoch, the
licence and the sources (``--hub-repo ORG/REPO`` adds ``hf-hub:ORG/REPO/model.safetensors``,
fetched by huggingface_hub; ``--source`` adds addresses; with neither, the ``file://`` address of
the published file). Then, on any machine that has the manifest and the file (mirror, Hugging Face
cache or a source), ``zoo.create_model("ARCH.TAG", pretrained=True)`` rebuilds the trained model
bit-exactly, offline too; ``--default`` makes it what ``zoo.create_model(RECIPE, pretrained=True)``
loads. The weights file is written with sorted metadata (:mod:`zoo.weights.safetensors_io`), so
publishing the same run twice gives the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from zoo.atomic import atomic_path, write_bytes, write_json, write_text
from zoo.registry import Registry
from zoo.runs import WEIGHTS_FILE, CheckpointInfo, RunFolderError, read_checkpoint_info
from zoo.weights.catalog import MANIFEST_NAME, load_entries
from zoo.weights.errors import ManifestError, PublishError
from zoo.weights.integrity import check_file, file_lock, sha256_of
from zoo.weights.schema import SCHEMA_VERSION, WeightsEntry, is_weights_name, parse_entry, parse_manifest, source_problem

log = logging.getLogger(__name__)

#: the file names of a hub-style repository folder
HUB_WEIGHTS, HUB_CONFIG, HUB_CARD = "model.safetensors", "config.json", "README.md"
#: the run's validation log (written by zoo.train.runlog) and its statement of the selected epoch
#: (written by zoo train's weight selection)
RUN_METRICS, RUN_SELECTION = "metrics.jsonl", "selection.json"


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish_run` wrote."""

    entry: WeightsEntry
    source_file: Path  # the run's weights file that was published
    weights: Path  # DIR/ARCH.TAG.safetensors
    hub_dir: Path  # DIR/ARCH.TAG
    manifest: Path  # DIR/weights_manifest.yaml


def check_weights_name(name: str) -> str:
    """``name`` if it is ``ARCH.TAG`` (else a :class:`PublishError` saying what a name looks like)."""
    if not is_weights_name(name):
        raise PublishError(
            f"--name {name!r}: a weights name is ARCH.TAG, the backbone (or recipe) and a tag joined by a dot, "
            "e.g. tf_efficientnet_lite0.grocery (letters, digits, _ . + -)"
        )
    return name


def check_hub_repo(repo: str) -> str:
    """``ORG/REPO`` as the Hugging Face Hub accepts it (checked by huggingface_hub's own validator)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise PublishError(f"--hub-repo {repo!r}: {exc}") from exc
    if repo.count("/") != 1:
        raise PublishError(f"--hub-repo {repo!r}: must be ORG/REPO (the repository the folder is uploaded to)")
    return repo


def read_selection(run_dir: Path) -> dict[str, Any] | None:
    """The run's own statement of which epoch its weights are (``selection.json``, written by ``zoo train``:
    ``{"select": METRIC|"last", "selected": {stage, epoch, global_step, value, file}, "last": {..., file}}``),
    or None for a run that says nothing (its ``model.safetensors`` then holds the last epoch)."""
    path = run_dir / RUN_SELECTION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise PublishError(f"{path} is not JSON ({exc}); train the run again or pass --weights FILE") from exc
    return data if isinstance(data, dict) else None


def select_run_weights(run_dir: Path, choice: str | None = None) -> Path:
    """The weights file of ``run_dir`` to publish.

    ``choice``: None or ``selected``: the run's weights for inference (``model.safetensors``, the epoch
    the run selected); ``best``: the same file, when the run selected it by a validation metric;
    ``last``: the last epoch's weights (``last.safetensors`` when the run kept them apart, else
    ``model.safetensors``); or a safetensors file (a path, or a name inside the run folder).
    """
    selection = read_selection(run_dir) or {}
    if choice in ("best", "last"):
        rule = selection.get("select")
        if choice == "best" and rule in (None, "last"):
            said = (f"does not say it selected an epoch (no {RUN_SELECTION})" if not selection
                    else f"selected the last epoch ({RUN_SELECTION}: train.select=last)")
            raise PublishError(
                f"--weights best: run folder {run_dir} {said}, so it kept no best epoch's weights; publish its weights "
                "(leave --weights out) or train with a validation metric to select by (--select)"
            )
        part = (selection.get("selected" if choice == "best" else "last") or {})
        name = part.get("file") or WEIGHTS_FILE
        path = run_dir / str(name)
        if not path.is_file():
            raise PublishError(f"--weights {choice}: run folder {run_dir} lacks {path.name}, which its {RUN_SELECTION} names")
        return path
    if choice in (None, "selected"):
        path = run_dir / WEIGHTS_FILE
        if not path.is_file():
            raise PublishError(
                f"run folder {run_dir} has no {WEIGHTS_FILE}: the run did not finish (resume it with zoo train "
                f"... --out {run_dir} --resume) or pass --weights FILE"
            )
        return path
    path = Path(choice)  # type: ignore[arg-type]
    if not path.is_file() and (run_dir / path).is_file():
        path = run_dir / path
    if not path.is_file():
        raise PublishError(f"--weights {choice}: no such file (nor {run_dir / str(choice)}); give best, last or a .safetensors file")
    if path.suffix != ".safetensors":
        raise PublishError(f"--weights {choice}: zoo publishes .safetensors files only")
    return path


def read_validation_metrics(run_dir: Path, global_step: int | None) -> dict[str, Any]:
    """The run's validation record of the published weights (``metrics.jsonl``): the ``val`` record of
    the step the weights were saved at (none when the weights do not say their step, or the run did not
    validate there); non-finite values are dropped."""
    path = run_dir / RUN_METRICS
    if not path.is_file() or global_step is None:
        return {}
    chosen: dict[str, Any] | None = None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("kind") != "val":
            continue
        if int(record.get("global_step", -1)) != global_step:
            continue
        chosen = record
    if chosen is None:
        return {}
    return {
        k: v for k, v in chosen.items()
        if k not in ("kind", "time") and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _read_run(run_dir: Path, weights: str | None) -> tuple[Path, CheckpointInfo]:
    if not run_dir.exists():
        raise PublishError(f"run folder {run_dir} does not exist; pass the --out folder of zoo train")
    if not run_dir.is_dir():
        raise PublishError(f"{run_dir} is not a run folder (a folder written by zoo train --out)")
    path = select_run_weights(run_dir, weights)
    try:
        info = read_checkpoint_info(path)
    except RunFolderError as exc:
        raise PublishError(str(exc)) from exc
    if not info.self_describing:
        raise PublishError(
            f"{path} does not describe its model (no zoo_config in its metadata: written before zoo runs described "
            "themselves); load it with zoo.create_model(RECIPE, checkpoint=...) and save it with zoo.runs.save_run_weights"
        )
    return path, info


def _sources(name: str, weights_path: Path, hub_repo: str | None, extra: Iterable[str]) -> list[str]:
    out = [f"hf-hub:{hub_repo}/{HUB_WEIGHTS}"] if hub_repo else []
    for src in extra:
        problem = source_problem(src)
        if problem:
            raise PublishError(f"--source {src!r}: {problem}")
        out.append(src)
    return out or [weights_path.resolve().as_uri()]


def _check_default(name: str, config: Mapping[str, Any], others: Iterable[WeightsEntry], registry: Registry) -> None:
    """``--default`` only where ``zoo.create_model(RECIPE, pretrained=True)`` would then pick these weights:
    the recipe (as registered, else as the run resolved it) pins no other weights, the name's arch is the
    backbone's (how defaults are looked up) and no other entry in use is that default already."""
    from zoo.recipes import get_recipe
    from zoo.registry import UnknownComponentError

    recipe = str(config.get("name"))
    try:
        pinned = get_recipe(recipe, registry=registry).get("weights")
    except UnknownComponentError:  # a recipe file: what the run resolved
        pinned = config.get("weights")
    if pinned and pinned != name:
        raise PublishError(
            f"--default: recipe '{recipe}' names its weights itself (weights: {pinned}), which win over a default "
            f"entry; drop --default and load these by name: zoo.create_model('{name}', pretrained=True)"
        )
    backbone = str(((config.get("model") or {}).get("backbone") or {}).get("name") or "").split(".", 1)[0]
    arch = name.split(".", 1)[0]
    if arch not in (backbone, recipe):
        raise PublishError(
            f"--default: '{name}' would never be recipe '{recipe}''s default: the default is looked up by the "
            f"backbone's name; name the weights {backbone or recipe}.TAG"
        )
    clash = [e for e in others if e.name != name and e.recipe == recipe and e.default and e.arch in (backbone, recipe)]
    if clash:
        where = f" ({clash[0].manifest})" if clash[0].manifest else ""
        raise PublishError(
            f"--default: '{clash[0].name}'{where} is already the default weights of recipe '{recipe}' with backbone "
            f"'{backbone}'; publish without --default, or unmark that entry first"
        )


def _read_raw_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "weights": {}}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"weights manifest {path} is not valid YAML: {exc}") from exc
    parse_manifest(raw, str(path), path)  # a manifest zoo cannot read is never extended
    raw.setdefault("weights", {})
    if raw["weights"] is None:
        raw["weights"] = {}
    return raw


def _check_new(name: str, raw: Mapping[str, Any], manifest: Path, overwrite: bool) -> None:
    if name in (raw.get("weights") or {}) and not overwrite:
        raise PublishError(f"weights '{name}' are already published in {manifest}; pass --overwrite to replace them")


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (no second copy of the bytes), else a copy; atomic either way."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _hub_license(license: str) -> str:
    """The Hub's licence identifier (lower-case SPDX-like ids; anything else is ``other``)."""
    low = license.strip().lower()
    return low if re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", low) else "other"


def model_card(entry: Mapping[str, Any], name: str, hub_repo: str | None) -> str:
    """The hub repository's README.md: YAML card data (huggingface_hub's ModelCardData) and a short text."""
    from huggingface_hub import ModelCard, ModelCardData

    card = ModelCardData(
        license=_hub_license(entry["license"]), library_name="zoo", pipeline_tag="image-feature-extraction",
        tags=["zoo", "image-retrieval", "safetensors"],
    )
    file = entry["files"][0]
    pre = entry["preprocess"]
    config = entry["config"]
    backbone = ((config.get("model") or {}).get("backbone") or {}).get("name", "?")
    rows = [
        ("recipe", f"`{entry['recipe']}` (backbone `{backbone}`)"),
        ("embedding", f"{entry['embedding_dim']}-d"),
        ("classes", str(entry.get("num_classes", "-"))),
        ("preprocessing", f"{pre['input_size']} px, {pre['resize']} resize, {pre['interpolation']}, mean {pre['mean']}, std {pre['std']}"),
        ("weights", f"`{HUB_WEIGHTS}`, {file['size']} bytes, sha256 `{file['sha256']}`"),
        ("licence", entry["license"]),
        ("paper", entry["paper"]),
    ]
    if entry.get("source_page"):
        rows.append(("source", entry["source_page"]))
    validation = (entry.get("metrics") or {}).get("validation") or {}
    manifest_hint = (
        f"hf download {hub_repo} {MANIFEST_NAME} --local-dir {name}" if hub_repo else f"the {MANIFEST_NAME} of this folder"
    )
    lines = [
        f"# {name}", "", entry.get("description") or f"A `{entry['recipe']}` model trained with zoo.", "",
        "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
    ]
    if validation:
        lines += ["## Validation (the run's record of the published epoch)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in validation.items()]
        lines.append("")
        if entry["metrics"].get("selected_by"):
            lines += [f"The run selected this epoch by {entry['metrics']['selected_by']}.", ""]
    lines += [
        "## Use", "",
        f"Point zoo at the manifest entry ({manifest_hint}) and load the weights by name; zoo checks the file's size "
        "and sha256 before it is loaded, offline too (`ZOO_OFFLINE=1` reads the Hugging Face cache only).", "",
        "```bash", f"export ZOO_WEIGHTS_MANIFEST={name}/{MANIFEST_NAME}", "```", "",
        "```python", "import zoo", "", f'model = zoo.create_model("{name}", pretrained=True)', "```", "",
        f"`{HUB_CONFIG}` holds the resolved config, the label map and the preprocessing; `{HUB_WEIGHTS}` describes "
        "itself too (its metadata), so `zoo.create_model(checkpoint=\"model.safetensors\")` rebuilds the model as well.",
        "",
    ]
    return str(ModelCard(f"---\n{card.to_yaml()}\n---\n\n" + "\n".join(lines))) + "\n"


def publish_run(
    run_dir: str | Path,
    name: str,
    to: str | Path,
    *,
    license: str,
    weights: str | None = None,
    paper: str | None = None,
    source_page: str | None = None,
    description: str | None = None,
    hub_repo: str | None = None,
    sources: Iterable[str] = (),
    default: bool = False,
    overwrite: bool = False,
    registry: Registry | None = None,
) -> PublishReport:
    """Publish the weights of ``run_dir`` as ``name`` into ``to`` (see the module docstring)."""
    from safetensors.torch import load_file

    from zoo.factory import create_model
    from zoo.plugins import get_registry
    from zoo.recipes import list_recipes
    from zoo.weights.safetensors_io import serialize

    reg = registry or get_registry()
    run_dir, to = Path(run_dir), Path(to)
    check_weights_name(name)
    if hub_repo is not None:
        check_hub_repo(hub_repo)
    if not license or not license.strip():
        raise PublishError("--license: name the licence of the weights (an SPDX id such as MIT or Apache-2.0)")
    if source_page is not None and not source_page.startswith(("https://", "http://")):
        raise PublishError(f"--source-page {source_page!r}: must be a web address (https://...)")
    if name in list_recipes(registry=reg):
        raise PublishError(f"--name {name!r} is a recipe's name; weights need a name of their own (ARCH.TAG)")
    if to.exists() and not to.is_dir():
        raise PublishError(f"--to {to}: is a file; give a folder (it is created when missing)")
    manifest = to / MANIFEST_NAME
    _check_new(name, _read_raw_manifest(manifest), manifest, overwrite)
    in_use = load_entries(reg)
    held = in_use.get(name)
    if held is not None and (held.manifest is None or Path(held.manifest).resolve() != manifest.resolve()):
        raise PublishError(
            f"weights '{name}' are already listed by {held.manifest}, a manifest in use; give these weights another tag"
        )
    path, info = _read_run(run_dir, weights)
    assert info.config is not None
    config = json.loads(info.metadata["zoo_config"])
    model = create_model(checkpoint=path, registry=reg)  # the weights load strictly into their own config
    state = load_file(str(path))
    step = info.metadata.get("global_step")
    metrics: dict[str, Any] = {}
    validation = read_validation_metrics(run_dir, int(step) if step and step.isdigit() else None)
    if validation:
        metrics["validation"] = validation
        selection = read_selection(run_dir) or {}
        rule, selected = selection.get("select"), (selection.get("selected") or {}).get("file")
        if rule not in (None, "last") and selected == path.name and path.parent.resolve() == run_dir.resolve():
            metrics["selected_by"] = f"{selection.get('mode') or 'max'} {rule}"
    meta = {**info.metadata, "zoo_weights": name, "source_file": path.name, "source_sha256": sha256_of(path)}
    data = serialize(state, meta)
    digest = sha256_of(data)
    published = to / f"{name}.safetensors"
    entry: dict[str, Any] = {
        "description": description or f"{config['name']} trained with zoo train ({len(info.labels or [])} classes)",
        "recipe": str(config["name"]),
        "default": bool(default),
        "format": "safetensors",
        "load": {"into": "model"},
        "files": [{
            "name": published.name, "sha256": digest, "size": len(data),
            "sources": _sources(name, published, hub_repo, sources),
        }],
        "preprocess": model.data_config.to_dict(),
        "embedding_dim": int(model.embedding_dim),
        "num_classes": len(info.labels) if info.labels is not None else None,
        "license": license.strip(),
        "paper": paper or "none",
        "metrics": metrics,
        "config": config,
        "labels": list(info.labels) if info.labels is not None else None,
    }
    if source_page:
        entry["source_page"] = source_page
    entry = {k: v for k, v in entry.items() if v is not None}
    checked = parse_entry(name, entry, str(manifest), manifest)  # never write an entry zoo cannot read
    if default:
        _check_default(name, config, [*in_use.values(), *_manifest_entries(manifest)], reg)
    hub_dir = to / name
    with file_lock(manifest):
        raw = _read_raw_manifest(manifest)
        _check_new(name, raw, manifest, overwrite)
        write_bytes(published, data)
        check_file(published, len(data), digest, f"published weights '{name}'")
        _link_or_copy(published, hub_dir / HUB_WEIGHTS)
        write_json(hub_dir / HUB_CONFIG, {
            "library_name": "zoo", "weights": name, **{k: entry[k] for k in entry if k not in ("files", "load", "default", "format")},
            "pretrained_cfg": model.pretrained_cfg,
        })
        write_text(hub_dir / HUB_CARD, model_card(entry, name, hub_repo))
        write_text(hub_dir / MANIFEST_NAME, _dump({"schema_version": SCHEMA_VERSION, "weights": {name: entry}}))
        raw["weights"][name] = entry
        parse_manifest(raw, str(manifest), manifest)
        write_text(manifest, _dump(raw))
    log.info("published %s (%s, sha256 %s) into %s", name, path, digest, to)
    return PublishReport(checked, path, published, hub_dir, manifest)


def _manifest_entries(path: Path) -> list[WeightsEntry]:
    if not path.is_file():
        return []
    return list(parse_manifest(_read_raw_manifest(path), str(path), path).values())


def _dump(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
