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
    names = ("arch", "epochs", "folds", "seed", "subset", "max_folds", "normalisation", "window_s", "bands",
             "steps_per_epoch", "corpora")
    known = {f.name for f in dataclasses.fields(r)}
    changes = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    wrong = sorted(set(changes) - known)
    if wrong:
        sys.exit(f"ser-convert: recipe {args.recipe!r} has no setting {wrong[0]!r}")
    for item in getattr(args, "set", None) or []:  # --set mixup=0 spec_augment=false ...
        key, _, value = item.partition("=")
        if key not in known:
            sys.exit(f"ser-convert: --set {item}: recipe {args.recipe!r} has no setting {key!r}; "
                     f"expected one of {sorted(known)}")
        try:
            changes[key] = json.loads(value)
        except ValueError:
            changes[key] = value
    if "corpora" in changes:
        changes["corpora"] = tuple(changes["corpora"])
    if "transfer_corpora" in changes:
        from .crops import ALL_CORPORA

        wrong = sorted(set(changes["transfer_corpora"]) - set(ALL_CORPORA))
        if wrong:
            sys.exit(f"ser-convert: transfer_corpora: no corpus {wrong[0]!r}; expected some of {list(ALL_CORPORA)}")
        changes["transfer_corpora"] = tuple(changes["transfer_corpora"])
    if "train_labels" in changes:
        from .corpora import LABELS

        wrong = sorted(set(changes["train_labels"]) - set(LABELS))
        if wrong:
            sys.exit(f"ser-convert: train_labels: no label {wrong[0]!r}; expected some of {list(LABELS)}")
        changes["train_labels"] = tuple(changes["train_labels"])
    if not isinstance(changes.get("members", 1), int) or changes.get("members", 1) < 1:
        sys.exit(f"ser-convert: members={changes['members']!r}: expected a whole number of models, 1 or more")
    return dataclasses.replace(r, **changes)


def _is_crop(recipe) -> bool:
    from .crops import CropRecipe

    return isinstance(recipe, CropRecipe)


def cmd_train(args) -> int:
    from .zoo import SEEDS

    if args.arch in SEEDS:  # a seed baseline: trained and scored by the zoo, no deployable model
        args.only, args.run, args.report, args.list = [args.arch], True, False, False
        args.no_random_split = not args.random_split
        return cmd_zoo(args)
    recipe = _recipe(args)
    if _is_crop(recipe):
        from .crops import cross_validate, train_final
    else:
        from .train import cross_validate, train_final
    run = Path(args.run_dir or f"runs/{recipe.arch}-{recipe.hash()}")
    report = None
    if not args.skip_cv:
        report = cross_validate(recipe, run, args.data, **({} if _is_crop(recipe) else
                                                             {"random_split_too": args.random_split}))
        print((run / "cv.md").read_text())
    elif args.cv_report:
        report = json.loads(Path(args.cv_report).read_text())
    out = Path(args.out or run / "model-int8.tflite")
    if _is_crop(recipe):  # the float model stays in the run directory: a teacher for a distilled model
        train_final(recipe, out, args.data, report, float_path=run / "final-float.keras")
    else:
        train_final(recipe, out, args.data, report)
    print(f"wrote {out} ({out.stat().st_size} bytes); run directory {run}")
    return 0


def cmd_stamp_cv(args) -> int:
    """Put a CV's numbers into the metadata of a model trained with --skip-cv before the CV had finished."""
    from .crops import stamp_cv

    report = json.loads(Path(args.cv_report).read_text())
    stamp_cv(Path(args.model), report)
    print(f"{args.model}: metadata now carries the CV of {args.cv_report} (folds {report.get('folds_done', 'all')})")
    return 0


def cmd_evaluate(args) -> int:
    """Cross-validate a recipe (speaker-independent) and write JSON, Markdown and PNGs."""
    recipe = _recipe(args)
    run = Path(args.run_dir or f"runs/{recipe.arch}-{recipe.hash()}")
    if _is_crop(recipe):
        from .crops import cross_validate

        cross_validate(recipe, run, args.data, fold_ids=args.only_folds)
    else:
        from .train import cross_validate

        cross_validate(recipe, run, args.data, random_split_too=args.random_split)
    print((run / "cv.md").read_text())
    return 0


def cmd_loco(args) -> int:
    """Leave one corpus out: train on the others, score the held-out corpus on the four shared classes."""
    from .crops import leave_one_corpus_out

    recipe = _recipe(args)
    if not _is_crop(recipe):
        sys.exit("ser-convert: loco needs a crop recipe (v2)")
    for held in args.corpus:
        leave_one_corpus_out(recipe, held, Path(args.run_dir or f"runs/loco-{recipe.hash()}"), args.data)
    return 0


def cmd_rescore(args) -> int:
    """Score a finished crop CV's fold models adapted, prior-only, through a low-pass, over a noise floor
    and as one household's device."""
    from .crops import rescore

    recipe = _recipe(args)
    out = rescore(Path(args.run_dir), recipe, args.data)
    for key in ("int8_adapted", "int8_prior_only", "int8_lowpass_adapted", "int8_noise60_adapted",
                "int8_household_adapted", "int8_adapted_voice_groups", "int8_household_voice_groups"):
        s = out[key]
        g = s["clip"]["by_gender"]
        print(f"{key:27} centred {s['centred']['all']['uar']:.3f} clip {s['clip']['all']['uar']:.3f} "
              f"any-alignment {s['any_alignment']['all']['uar']:.3f} men/women clip "
              f"{g['male']['uar']:.3f}/{g['female']['uar']:.3f}")
    return 0


def cmd_affect(args) -> int:
    """Arousal/valence of a finished crop CV's held-out predictions (AUCs; docs/model-card.md)."""
    from .crops import affect_report

    out = affect_report(Path(args.run_dir), args.data)
    print(json.dumps({k: v for k, v in out.items() if k != "mean_by_class"}, indent=1))
    return 0


def cmd_voice_groups(args) -> int:
    """Fit the device's voice-group classifier on every voice of the corpora; check it by voice folds first."""
    import numpy as np

    from edge.model import Classifier

    from . import voicegroups
    from .crops import ALL_CORPORA, CropRecipe, load

    features = Classifier(args.model).meta.features  # the front end whose raw frames the device will see
    recipe = CropRecipe(bands=features.nfilt)
    c = load(recipe, args.data, progress=False)
    if features.to_dict() != recipe.feature_config().to_dict():
        sys.exit(f"ser-convert: {args.model}'s front end is not the crop recipes' ({features.nfilt} bands)")
    pitch = voicegroups.utterance_pitch(c)
    idx = np.flatnonzero(np.isin(c.corpus, ALL_CORPORA))
    check = voicegroups.accuracy_by_speaker_folds(c, idx, pitch, features.to_dict())
    print("held-out voices in their gender's group:", json.dumps(check))
    info = {"fitted_on": sorted(set(c.corpus[idx].tolist())), "voices": len(set(c.speaker[idx].tolist())),
            "copies": "clean, 4 kHz low-pass and the device augmentations", "held_out_voices_check": check,
            "command": "ser-convert voice-groups --model " + str(args.model) + " --out " + str(args.out)}
    vg = voicegroups.fit_groups(c, idx, pitch, features.to_dict(), info=info)
    Path(args.out).write_text(json.dumps(vg.to_dict(), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


ZOO_BEGIN, ZOO_END = "<!-- zoo table: ser-convert zoo --report -->", "<!-- end zoo table -->"


def cmd_zoo(args) -> int:
    """The seed papers' architectures as baselines on our speaker-independent folds."""
    from . import zoo

    names = args.only or list(zoo.SEEDS)
    unknown = [n for n in names if n not in zoo.SEEDS]
    if unknown:
        sys.exit(f"ser-convert: unknown architecture {unknown[0]!r}; expected one of {sorted(zoo.SEEDS)}")
    run_dir = Path(args.run_dir or "runs/zoo")
    if args.list:
        for s in zoo.SEEDS.values():
            who = f"seed {s.source}" if s.source.isdigit() else "ours  "
            print(f"{s.name:22} {who}  features: {s.features.__name__[5:]:20} paper: {s.paper_claim}")
        return 0
    rows = []
    if args.run:
        settings = zoo.ZooSettings(names=names, epochs=args.epochs or 0, run_folds=args.folds or 1,
                                   subset=args.subset or 0, random_split=not args.no_random_split)
        rows = zoo.run(settings, run_dir, args.data)
        for r in rows:
            print(json.dumps({k: r[k] for k in ("name", "params", "macs", "int8_status", "float", "int8",
                                                "random_split") if k in r}))
    if args.report:
        src = run_dir / "zoo.jsonl"
        rows = [json.loads(line) for line in src.read_text().splitlines()]
        latest = {(r["name"], r["epochs"]): r for r in rows}  # the last run of each model and budget wins
        rows = sorted(latest.values(), key=lambda r: (list(zoo.SEEDS).index(r["name"]), r["epochs"]))
        ours = zoo.our_model_on_same_folds(rows[0]["folds"])
        table = zoo.report_markdown(rows, ours)
        Path("docs/zoo.json").write_text(json.dumps({"rows": rows, "ours": ours}, indent=1) + "\n")
        doc = Path(args.results)
        text = doc.read_text()
        if ZOO_BEGIN in text:
            head, rest = text.split(ZOO_BEGIN, 1)
            text = head + ZOO_BEGIN + "\n" + table + ZOO_END + rest.split(ZOO_END, 1)[1]
        else:
            text += f"\n## Seed baselines\n\n{ZOO_BEGIN}\n{table}{ZOO_END}\n"
        doc.write_text(text)
        print(table)
        print(f"wrote the table into {doc} and the numbers into docs/zoo.json")
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
    i, o = mf.inputs[0], mf.outputs[0]
    print(f"input  {i['shape']} {i['dtype']}   output {o['shape']} {o['dtype']}")
    print(f"{'op':32} {'ver':>3}  inputs -> outputs")
    for o in mf.ops:
        print(f"{o.name:32} {o.version:>3}  {','.join(o.inputs)} -> {','.join(o.outputs)}")
    if meta:
        print("labels:", ", ".join(meta["labels"]))
        print(
            f"window {meta['window_s']} s, hop {meta['hop_s']} s, {meta['frames']} frames; "
            f"normalisation {meta['normalisation']}"
        )
        print("features:", json.dumps(meta["features"]))
        for k, v in meta.get("extra", {}).items():
            print(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}")
    else:
        print("no ser_edge metadata")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser-convert", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--recipe", default="default", help="default, v2 (experimental), cnn_lstm, smoke or smoke_v2")
        sp.add_argument("--arch", help="dscnn, cnn_lstm, or a seed baseline (ser-convert zoo --list)")
        sp.add_argument("--epochs", type=int)
        sp.add_argument("--folds", type=int)
        sp.add_argument("--seed", type=int)
        sp.add_argument("--subset", type=int, help="every n-th utterance only (quick runs)")
        sp.add_argument("--max-folds", type=int, help="run only the first n folds (search on one fold)")
        sp.add_argument(
            "--only-folds",
            type=int,
            nargs="+",
            help="crop recipes: run these folds only (0-based); "
            "the report covers every fold finished in the run directory",
        )
        sp.add_argument(
            "--normalisation", choices=("device", "window_mean"), help="crop recipes: how bands are normalised"
        )
        sp.add_argument("--window-s", type=float, help="crop recipes: window length in seconds")
        sp.add_argument("--bands", type=int, help="crop recipes: mel bands")
        sp.add_argument("--steps-per-epoch", type=int, help="crop recipes: batches per epoch")
        sp.add_argument("--corpora", nargs="+", help="crop recipes: corpora to train on (ravdess tess nemo urdu)")
        # extend: a second --set adds to the first (with "store" it silently replaced it, and a run meant as
        # the teachers' recipe plus one setting trained on the defaults: docs/RESULTS.md section 10, #4)
        sp.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                        help="any other recipe setting (JSON values); may be given more than once")
        sp.add_argument("--data", help="corpora directory (default $SER_DATA or ../shared/data)")
        sp.add_argument("--run-dir", help="where the run's files go (default runs/<arch>-<recipe hash>)")
        sp.add_argument(
            "--random-split",
            action="store_true",
            help="also report a random split, labelled 'random split (speakers shared)'",
        )

    t = sub.add_parser("train", help="cross-validate, then train on all data and write an int8 model")
    common(t)
    t.add_argument("--out", help="model file to write")
    t.add_argument("--skip-cv", action="store_true")
    t.add_argument("--cv-report", help="with --skip-cv: the cv.json whose numbers go into the model's metadata")
    t.set_defaults(fn=cmd_train)
    st = sub.add_parser("stamp-cv", help="write a finished crop CV's numbers into a trained model's metadata")
    st.add_argument("model")
    st.add_argument("--cv-report", required=True, help="the CV's cv.json")
    st.set_defaults(fn=cmd_stamp_cv)
    e = sub.add_parser("evaluate", help="speaker-independent cross-validation report")
    common(e)
    e.set_defaults(fn=cmd_evaluate)
    lo = sub.add_parser("loco", help="leave one corpus out (crop recipes): the four shared classes")
    common(lo)
    lo.add_argument("--corpus", nargs="+", required=True, help="the corpus (or corpora, one run each) to hold out")
    lo.set_defaults(fn=cmd_loco)
    rs = sub.add_parser("rescore", help="a finished crop CV's fold models: adapted, prior only, low-pass, noise, "
                                        "household")
    common(rs)
    rs.set_defaults(fn=cmd_rescore)
    vg = sub.add_parser("voice-groups", help="fit the device's voice-group classifier (edge/voicegroups.py)")
    vg.add_argument("--model", default="edge/models/default.tflite", help="the model whose front end it serves")
    vg.add_argument("--out", default="edge/models/voice-groups.json")
    vg.add_argument("--data", help="corpora directory (default $SER_DATA or ../shared/data)")
    vg.set_defaults(fn=cmd_voice_groups)
    af = sub.add_parser("affect", help="arousal/valence of a finished crop CV's held-out predictions")
    af.add_argument("--run-dir", required=True)
    af.add_argument("--data", help="corpora directory (default $SER_DATA or ../shared/data)")
    af.set_defaults(fn=cmd_affect)
    z = sub.add_parser("zoo", help="the seed papers' architectures as speaker-independent baselines")
    z.add_argument("--list", action="store_true", help="list the architectures")
    z.add_argument("--run", action="store_true", help="train and score them (resumes: finished ones are kept)")
    z.add_argument("--report", action="store_true", help="write the table into docs/RESULTS.md")
    z.add_argument("--only", nargs="+", help="these architectures only")
    z.add_argument("--epochs", type=int, help="the same epochs for all (default: each one's budget)")
    z.add_argument("--folds", type=int, help="how many of the 5 speaker folds to run (default 1)")
    z.add_argument("--subset", type=int, help="every n-th utterance only (smoke tests)")
    z.add_argument("--no-random-split", action="store_true")
    z.add_argument("--data")
    z.add_argument("--run-dir", help="default runs/zoo")
    z.add_argument("--results", default="docs/RESULTS.md")
    z.set_defaults(fn=cmd_zoo)
    q = sub.add_parser("quantize", help="check a model's ops run on int8 and load on tflite-runtime 2.14")
    q.add_argument("model")
    q.set_defaults(fn=cmd_quantize)
    i = sub.add_parser("inspect", help="print a model's metadata, ops and dtypes")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_inspect)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
