"""Training each seed on the speaker folds (and once on a random split, labelled), with its rows."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..corpora import LABELS
from ..dataset import speaker_folds
from .convert import count_macs, latency, run_tflite, to_float, to_int8_isolated
from .data import load_features, standardise
from .networks import SEEDS, Seed, _tf


@dataclass
class ZooSettings:
    """The compute budget. Two CPU cores cannot train five papers' networks five times each for 20-100
    epochs: the heavy ones (0.3-1.8 GMAC per utterance) get `Seed.budget_epochs` = 5, the light ones 30;
    every model gets the same fold and the same data."""

    epochs: int = 0  # >0: the same number for every model (overrides Seed.budget_epochs)
    folds: int = 5  # folds are made from all five, exactly as for the default recipe ...
    run_folds: int = 1  # ... and the first `run_folds` are trained (the same for every model)
    random_split: bool = True
    seed: int = 0
    tess_every: int = 4  # training uses every n-th TESS utterance (TESS: 2 speakers, 2800 files)
    subset: int = 0  # >0: every n-th utterance (smoke tests)
    names: list = field(default_factory=lambda: list(SEEDS))


def _fit(seed: Seed, x_train, y_train, epochs, rs):
    tf = _tf()
    from ..train import set_seeds

    set_seeds(rs)
    model = seed.build([a.shape[1:] for a in x_train], len(LABELS))
    opt = (tf.keras.optimizers.RMSprop if seed.optimizer == "rmsprop" else tf.keras.optimizers.Adam)(seed.learning_rate)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    model.fit(
        x_train if len(x_train) > 1 else x_train[0],
        y_train,
        batch_size=seed.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    return model, time.time() - t0


def _predict(model, x):
    return model.predict(x if len(x) > 1 else x[0], batch_size=64, verbose=0)


def evaluate_seed(name: str, arrays, y, speakers, genders, settings: ZooSettings, out_dir: Path) -> dict:
    from .. import evaluate

    seed = SEEDS[name]
    folds = speaker_folds(speakers, genders, settings.folds, settings.seed)[: settings.run_folds]
    epochs = settings.epochs or seed.budget_epochs
    row = {
        "name": name,
        "source": seed.source,
        "paper_claim": seed.paper_claim,
        "folds": folds,
        "epochs": epochs,
        "notes": seed.notes,
    }
    true, pf, p8, fold_rows = [], [], [], []
    for k, held_out in enumerate(folds):
        test = np.flatnonzero(np.isin(speakers, held_out))
        train = np.flatnonzero(~np.isin(speakers, held_out))
        x = standardise(arrays, train)
        model, secs = _fit(seed, [a[train] for a in x], y[train], epochs, settings.seed + k)
        if k == 0:
            row["params"] = int(model.count_params())
            row["macs"] = count_macs(model)
            fpath = out_dir / f"{name}-float.tflite"
            flt, row["float_status"] = to_float(model)
            if flt is not None:
                fpath.write_bytes(flt)
                row["float_bytes"] = fpath.stat().st_size
                row["float_latency"] = latency(fpath)
        p_float = _predict(model, [a[test] for a in x])
        rep = [a[train][np.random.default_rng(k).choice(len(train), min(200, len(train)), replace=False)] for a in x]
        tfl, status = to_int8_isolated(name, model, rep, out_dir / f"{name}-fold{k}-int8.tflite")
        fold = {"fold": k, "train_s": secs, "float UAR": evaluate.metrics(y[test], p_float.argmax(1), LABELS)["uar"]}
        if tfl is not None:
            ipath = out_dir / f"{name}-fold{k}-int8.tflite"
            ipath.write_bytes(tfl)
            from ..quantize import check_int8

            problems = check_int8(str(ipath))
            status = "converted" if not problems else "converted, but: " + "; ".join(problems[:2])
            p_int8 = run_tflite(ipath, [a[test] for a in x])
            p8.append(p_int8)
            fold["int8 UAR"] = evaluate.metrics(y[test], p_int8.argmax(1), LABELS)["uar"]
            if k == 0:
                row["int8_bytes"] = ipath.stat().st_size
                row["int8_latency"] = latency(ipath)
        row.setdefault("int8_status", status)
        true.append(y[test])
        pf.append(p_float)
        fold_rows.append(fold)
        print(json.dumps({"name": name, **fold}), flush=True)
    yt = np.concatenate(true)
    row["fold_rows"] = fold_rows
    row["float"] = evaluate.metrics(yt, np.concatenate(pf).argmax(1), LABELS)
    if len(p8) == len(folds):
        row["int8"] = evaluate.metrics(yt, np.concatenate(p8).argmax(1), LABELS)
        row["agreement"] = evaluate.agreement(np.concatenate(pf), np.concatenate(p8))
    if settings.random_split:
        from ..dataset import random_split

        tr, te = random_split(len(y), 0.2, settings.seed)
        x = standardise(arrays, tr)
        model, _ = _fit(seed, [a[tr] for a in x], y[tr], epochs, settings.seed)
        row["random_split"] = {
            "note": "random split (speakers shared)",
            **evaluate.metrics(y[te], _predict(model, [a[te] for a in x]).argmax(1), LABELS),
        }
    for key in ("float", "int8", "random_split"):  # keep the JSON small: no confusion matrices
        if key in row:
            row[key] = {k: row[key][k] for k in ("accuracy", "uar", "macro_f1")}
    return row


def run(settings: ZooSettings, out_dir: Path, data_dir=None) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    utts, feats = load_features(settings.names, data_dir, tess_every=settings.tess_every, subset=settings.subset)
    y = np.array([LABELS.index(u.label) for u in utts])
    speakers = np.array([u.speaker for u in utts])
    genders = np.array([u.gender for u in utts])
    results_path = out_dir / "zoo.jsonl"
    done = {}
    if results_path.exists():  # resume: a finished model is not trained again
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            if (
                r.get("epochs") == (settings.epochs or SEEDS[r["name"]].budget_epochs)
                and len(r.get("folds", [])) == settings.run_folds
                and r.get("n_utterances") == len(y)
            ):
                done[r["name"]] = r
    rows = []
    for name in settings.names:
        if name in done:
            rows.append(done[name])
            continue
        t0 = time.time()
        row = evaluate_seed(name, feats[name], y, speakers, genders, settings, out_dir)
        row["minutes"] = (time.time() - t0) / 60
        row["n_utterances"] = len(y)
        rows.append(row)
        with results_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return rows
