"""Released weights: list, fetch, verify, mirror for offline machines, convert upstream checkpoints,
publish trained runs.

Examples:
  zoo weights list 'tf_efficientnet*' --long
  zoo weights fetch tf_efficientnet_lite0.in1k --to ./weights
  zoo weights verify --all
  zoo weights export-mirror zoo-mirror/ tf_efficientnet_lite0.in1k   # elsewhere: ZOO_WEIGHTS_MIRROR=zoo-mirror/ ZOO_OFFLINE=1
  zoo weights convert efficientnet-lite0-57934424.pth --from lukemelas-efficientnet-lite --recipe default model.backbone.name=tf_efficientnet_lite0 --out lite0.safetensors
  zoo weights publish runs/ft --name tf_efficientnet_lite0.myshop --to published/ --license MIT   # see: zoo weights publish --help

Upstream competition layouts convert the same way (--from glr2020-3rd, glr2021-1st, glr2021-top100,
guie2022-2nd; see: zoo components converter).

Resolution order: explicit file -> ZOO_WEIGHTS_MIRROR -> cache (ZOO_CACHE_DIR) -> the entry's sources
(never the network with ZOO_OFFLINE=1). Every file is checked (size, then sha256) before use.
"""

from __future__ import annotations

import argparse
import sys

COMMAND = "weights"
HELP = "list, fetch, verify, mirror, convert and publish weights (weights_manifest.yaml)"


PUBLISH_HELP = """\
Write a trained run's weights into DIR as a release: DIR/NAME.safetensors (full sha256 and size in the
entry), DIR/weights_manifest.yaml (the entry: recipe, resolved config with the real head size, labels,
preprocessing, the run's validation metrics, licence, sources) and DIR/NAME/, a Hugging Face hub-style
repository (model.safetensors, config.json, README.md model card, the entry alone).

Examples:
  zoo weights publish runs/ft --name tf_efficientnet_lite0.shop --to release/ --license MIT --hub-repo me/tf_efficientnet_lite0.shop

Then, on any machine (offline too; every file is checked, size then sha256, before it is loaded):
  ZOO_WEIGHTS_MANIFEST=release/weights_manifest.yaml ZOO_WEIGHTS_MIRROR=release/ ZOO_OFFLINE=1 \\
      python -c "import zoo; zoo.create_model('tf_efficientnet_lite0.shop', pretrained=True)"
  hf upload me/tf_efficientnet_lite0.shop release/tf_efficientnet_lite0.shop   # then its hf-hub: source works anywhere
"""


def configure(p: argparse.ArgumentParser) -> None:
    from zoo.cli._options import add_override_args

    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")

    ls = sub.add_parser("list", help="list weights by fnmatch PATTERN", description="List manifest entries.")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    ls.add_argument("-l", "--long", action="store_true", help="recipe, status, dim, licence and files")
    ls.add_argument("--verified", action="store_true", help="only weights with hashes (loadable)")
    ls.add_argument("--json", action="store_true", help="full entries as JSON")
    ls.set_defaults(func=run_list)

    fe = sub.add_parser("fetch", help="fetch (and verify) the files of NAME", description="Fetch and verify weights.")
    fe.add_argument("name", help="weights name (see: zoo weights list)")
    fe.add_argument("--to", default=None, help="also copy the verified files into this folder")
    fe.add_argument("--file", default=None, help="use this local file (checked against the manifest) instead of searching")
    fe.set_defaults(func=run_fetch)

    ve = sub.add_parser("verify", help="check local copies (size + sha256) of NAME or --all",
                        description="Check mirror, cache and package copies against the manifest; nothing is downloaded "
                                    "unless --fetch. Exit status 1 when a copy is corrupt (or NAME has none).")
    ve.add_argument("name", nargs="?", default=None, help="weights name")
    ve.add_argument("--all", action="store_true", help="every entry")
    ve.add_argument("--fetch", action="store_true", help="fetch missing files first")
    ve.add_argument("--json", action="store_true", help="machine-readable output")
    ve.set_defaults(func=run_verify)

    mi = sub.add_parser("export-mirror", help="write a folder other machines use offline (ZOO_WEIGHTS_MIRROR)",
                        description="Fetch, convert and copy verified weights into DIR with a manifest.")
    mi.add_argument("dir", help="mirror folder")
    mi.add_argument("names", nargs="*", help="weights names (default: every verified entry)")
    mi.set_defaults(func=run_export_mirror)

    co = sub.add_parser("convert", help="convert an upstream .pth into zoo safetensors",
                        description="Read SRC with torch.load(weights_only=True), map it with the LAYOUT converter "
                                    "onto RECIPE's model (strict) and write safetensors with provenance metadata.")
    co.add_argument("src", help="upstream checkpoint (.pth/.pt)")
    co.add_argument("--from", dest="layout", required=True, help="upstream layout (see: zoo components converter)")
    co.add_argument("--recipe", required=True, help="recipe the checkpoint belongs to")
    add_override_args(co)
    co.add_argument("--out", required=True, help="output .safetensors")
    co.set_defaults(func=run_convert)

    pu = sub.add_parser("publish", help="release a trained run's weights: safetensors + manifest entry + hub folder",
                        description=PUBLISH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    pu.add_argument("run", metavar="RUN_DIR", help="the run folder of zoo train --out")
    pu.add_argument("--name", required=True, help="weights name ARCH.TAG, e.g. tf_efficientnet_lite0.grocery")
    pu.add_argument("--to", required=True, metavar="DIR", help="publication folder (created; a mirror and hub folders)")
    pu.add_argument("--license", required=True, help="licence of the weights (SPDX id: MIT, Apache-2.0, CC-BY-4.0, ...)")
    pu.add_argument("--weights", default=None, metavar="best|last|FILE",
                    help="which weights of the run: best or last epoch's, or a .safetensors file "
                         "(default: the run's selected weights, RUN_DIR/model.safetensors)")
    pu.add_argument("--hub-repo", default=None, metavar="ORG/REPO",
                    help="the Hugging Face repository DIR/NAME is uploaded to; adds the source hf-hub:ORG/REPO/model.safetensors")
    pu.add_argument("--source", action="append", default=[], metavar="URL",
                    help="another address of the file (https://..., file://..., hf-hub:...); repeatable")
    pu.add_argument("--source-page", default=None, metavar="URL", help="web page about the weights")
    pu.add_argument("--paper", default=None, help="citation (default: none)")
    pu.add_argument("--description", default=None, help="one line describing the weights")
    pu.add_argument("--default", action="store_true",
                    help="make them the recipe's default weights (zoo.create_model(RECIPE, pretrained=True))")
    pu.add_argument("--overwrite", action="store_true", help="replace an entry of the same name in DIR")
    pu.set_defaults(func=run_publish)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    from zoo.cli._output import print_json, print_table
    from zoo.weights.catalog import list_weights, load_entries
    from zoo.weights.env import cache_path

    entries = load_entries()
    names = list_weights(args.pattern, verified_only=args.verified)
    if args.json:
        print_json([entries[n].to_dict() for n in names])
        return 0 if names else 1
    if not args.long:
        for n in names:
            print(n)
        return 0 if names else 1
    rows = []
    for n in names:
        e = entries[n]
        cached = all(f.sha256 and cache_path(f.name, f.sha256).is_file() for f in e.files)
        size = sum(f.size or 0 for f in e.files)
        rows.append([
            n, e.recipe + (f" (+{len(e.overrides)} overrides)" if e.overrides else ""),
            "verified" if e.verified else "unverified", e.embedding_dim or "-",
            f"{size / 2**20:.1f}M" if size else "-", "yes" if cached else "no", e.license,
        ])
    print_table(rows, ["name", "recipe", "status", "dim", "size", "cached", "license"])
    return 0 if names else 1


def run_fetch(args: argparse.Namespace) -> int:
    from zoo.weights.catalog import get_weights
    from zoo.weights.resolve import fetch_entry

    entry = get_weights(args.name)
    explicit = None
    if args.file:
        if len(entry.files) != 1:
            from zoo.weights.errors import ManifestError

            raise ManifestError(f"--file needs an entry with one file; '{entry.name}' has {len(entry.files)}")
        explicit = {entry.files[0].name: args.file}
    for path in fetch_entry(entry, to=args.to, explicit=explicit):
        print(path)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from zoo.cli._output import print_json, print_table
    from zoo.weights.catalog import get_weights, load_entries
    from zoo.weights.verify import verify_entry

    if bool(args.name) == bool(args.all):
        print("zoo weights verify: give a NAME or --all", file=sys.stderr)
        return 2
    entries = [get_weights(args.name)] if args.name else sorted(load_entries().values(), key=lambda e: e.name)
    results = [r for e in entries for r in verify_entry(e, fetch=args.fetch)]
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        print_table([[r.entry, r.file, r.status, r.path or "-"] for r in results], ["entry", "file", "status", "path"])
        for r in results:
            if r.status == "corrupt":
                print(f"CORRUPT {r.path}: {r.detail}", file=sys.stderr)
    corrupt = any(r.status == "corrupt" for r in results)
    missing = args.name is not None and any(r.status in ("missing", "unverified") for r in results)
    return 1 if corrupt or missing else 0


def run_export_mirror(args: argparse.Namespace) -> int:
    from zoo.weights.mirror import export_mirror

    report = export_mirror(args.dir, args.names or None)
    for path in report.files:
        print(path)
    if report.skipped:
        print(f"skipped (unverified, public source only): {', '.join(report.skipped)}", file=sys.stderr)
    print(f"mirror ready: ZOO_WEIGHTS_MIRROR={report.root} ({len(report.entries)} entries)", file=sys.stderr)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from zoo.weights.convert import convert_checkpoint

    out = convert_checkpoint(args.src, args.layout, args.recipe, args.out, overrides=args.overrides)
    print(out)
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from zoo.weights.publish import publish_run

    report = publish_run(
        args.run, args.name, args.to, license=args.license, weights=args.weights, paper=args.paper,
        source_page=args.source_page, description=args.description, hub_repo=args.hub_repo, sources=args.source,
        default=args.default, overwrite=args.overwrite,
    )
    entry = report.entry
    wf = entry.files[0]
    print(report.weights)
    print(f"published '{entry.name}' from {report.source_file}: {wf.size} bytes, sha256 {wf.sha256}", file=sys.stderr)
    print(f"hub-style repository: {report.hub_dir} (sources: {', '.join(wf.sources)})", file=sys.stderr)
    print(f"use it: ZOO_WEIGHTS_MANIFEST={report.manifest} ZOO_WEIGHTS_MIRROR={report.manifest.parent} "
          f"-> zoo.create_model('{entry.name}', pretrained=True)", file=sys.stderr)
    return 0
