"""ser-convert: train, evaluate, quantise and inspect speech-emotion models (workstation side)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _recipe(args):
    from .train import RECIPES

    if args.recipe not in RECIPES:
        sys.exit(f"ser-convert: unknown recipe {args.recipe!r}; expected one of {sorted(RECIPES)}")
    r = RECIPES[args.recipe]
    changes = {k: getattr(args, k) for k in ("arch", "epochs", "folds", "seed", "subset") if getattr(args, k, None) is not None}
    return dataclasses.replace(r, **changes)


def cmd_train(args) -> int:
    from .train import cross_validate, train_final

    recipe = _recipe(args)
    run = Path(args.run_dir or f"runs/{recipe.arch}-{recipe.hash()}")
    report = None
    if not args.skip_cv:
        report = cross_validate(recipe, run, args.data, random_split_too=args.random_split)
        print((run / "cv.md").read_text())
    out = Path(args.out or run / "model-int8.tflite")
    train_final(recipe, out, args.data, report)
    print(f"wrote {out} ({out.stat().st_size} bytes); run directory {run}")
    return 0


def cmd_evaluate(args) -> int:
    """Cross-validate a recipe (speaker-independent) and write JSON, Markdown and PNGs."""
    from .train import cross_validate

    recipe = _recipe(args)
    run = Path(args.run_dir or f"runs/{recipe.arch}-{recipe.hash()}")
    cross_validate(recipe, run, args.data, random_split_too=args.random_split)
    print((run / "cv.md").read_text())
    return 0


def cmd_quantize(args) -> int:
    """Re-check an existing model file's int8 ops (conversion itself happens inside train)."""
    from .quantize import check_int8

    problems = check_int8(args.model)
    for p in problems:
        print(f"{args.model}: {p}")
    print(f"{args.model}: {'full int8, loadable by tflite-runtime 2.14' if not problems else 'NOT clean'}")
    return 1 if problems else 0


def cmd_inspect(args) -> int:
    from edge.model import METADATA_NAME, ModelError, read_model_file

    try:
        mf = read_model_file(args.model)
    except ModelError as e:
        print(f"ser-convert: {e}", file=sys.stderr)
        return 2
    meta = json.loads(mf.metadata[METADATA_NAME]) if METADATA_NAME in mf.metadata else None
    doc = {"path": mf.path, "size": mf.size, "sha256": mf.sha256, "inputs": mf.inputs, "outputs": mf.outputs,
           "op_versions": mf.op_versions,
           "ops": [dataclasses.asdict(o) for o in mf.ops], "metadata": meta}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{mf.path}: {mf.size} bytes, sha256 {mf.sha256}")
    print(f"input  {mf.inputs[0]['shape']} {mf.inputs[0]['dtype']}   output {mf.outputs[0]['shape']} {mf.outputs[0]['dtype']}")
    print(f"{'op':32} {'ver':>3}  inputs -> outputs")
    for o in mf.ops:
        print(f"{o.name:32} {o.version:>3}  {','.join(o.inputs)} -> {','.join(o.outputs)}")
    if meta:
        print("labels:", ", ".join(meta["labels"]))
        print(f"window {meta['window_s']} s, hop {meta['hop_s']} s, {meta['frames']} frames; "
              f"normalisation {meta['normalisation']}")
        print("features:", json.dumps(meta["features"]))
        for k, v in meta.get("extra", {}).items():
            print(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}")
    else:
        print("no ser_edge metadata")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ser-convert", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--recipe", default="default", help="default, cnn_lstm or smoke")
        sp.add_argument("--arch", choices=["dscnn", "cnn_lstm"])
        sp.add_argument("--epochs", type=int)
        sp.add_argument("--folds", type=int)
        sp.add_argument("--seed", type=int)
        sp.add_argument("--subset", type=int, help="every n-th utterance only (quick runs)")
        sp.add_argument("--data", help="corpora directory (default $SER_DATA or ../shared/data)")
        sp.add_argument("--run-dir", help="where the run's files go (default runs/<arch>-<recipe hash>)")
        sp.add_argument("--random-split", action="store_true",
                        help="also report a random split, labelled 'random split (speakers shared)'")

    t = sub.add_parser("train", help="cross-validate, then train on all data and write an int8 model")
    common(t)
    t.add_argument("--out", help="model file to write")
    t.add_argument("--skip-cv", action="store_true")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("evaluate", help="speaker-independent cross-validation report")
    common(e)
    e.set_defaults(fn=cmd_evaluate)
    q = sub.add_parser("quantize", help="check a model's ops run on int8 and load on tflite-runtime 2.14")
    q.add_argument("model")
    q.set_defaults(fn=cmd_quantize)
    i = sub.add_parser("inspect", help="print a model's metadata, ops and dtypes")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_inspect)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
