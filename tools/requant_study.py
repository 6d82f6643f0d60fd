"""Does int8 calibration decide int8-float agreement? Re-quantise a finished crop CV's float fold models
with other calibration sets, without retraining.

    python tools/requant_study.py runs/t-s11 --folds 0 1 --rep 300 1000 3000 [--clean-rep]
    python tools/requant_study.py runs/c-s91 --folds 1 --mode int8 16x8    # the CRNN's LSTM

For each fold: the float model the CV kept (foldK-float.keras), calibration windows drawn by the
training sampler (as `crops._representative` draws them; --clean-rep: clean copies only), int8
conversion (or 16x8: int16 activations, int8 weights, float input and output), and on the held-out
utterances at every alignment: top-1 agreement with the float model and clip UAR, quantised and float.
One line per (fold, calibration, mode).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from converter import crops, evaluate, quantize  # noqa: E402
from converter.corpora import LABELS  # noqa: E402


def recipe_of(run: Path) -> crops.CropRecipe:
    d = json.loads((run / "recipe.json").read_text())
    def as_tuple(v):  # JSON lists back to the recipe's tuples
        return tuple(as_tuple(x) for x in v) if isinstance(v, list) else v

    return crops.CropRecipe(**{k: as_tuple(v) for k, v in d.items()})


def convert(model, arch: str, rep: np.ndarray, mode: str) -> bytes:
    """int8 exactly as the CV converts, or 16x8 (int16 activations, int8 weights)."""
    if mode == "int8":
        return quantize.to_tflite(model, arch, rep)
    tf = crops.architectures.tf
    conv = tf.lite.TFLiteConverter.from_keras_model(quantize.static_batch_copy(model, arch))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([w[None, ..., None].astype(np.float32)] for w in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--folds", type=int, nargs="+", default=[0])
    p.add_argument("--rep", type=int, nargs="+", default=[300])
    p.add_argument("--clean-rep", action="store_true", help="calibrate on clean copies only")
    p.add_argument("--mode", nargs="+", default=["int8"], choices=["int8", "16x8"])
    p.add_argument("--data", default=os.environ.get("SER_DATA"))
    a = p.parse_args(argv)
    recipe = recipe_of(a.run)
    c = crops.load(recipe, a.data, progress=False)
    folds = crops.ravdess_folds(c, recipe.folds, recipe.seed)
    for k in a.folds:
        test = np.flatnonzero(np.isin(c.speaker, folds[k]))
        train = np.flatnonzero(~np.isin(c.speaker, folds[k]) & crops.in_recipe(c, recipe))
        prior = crops.prior_stats(c, train)
        meta = recipe.metadata(*prior)
        model = crops.architectures.tf.keras.models.load_model(a.run / f"fold{k}-float.keras", compile=False)
        rep_recipe = dataclasses.replace(recipe, clean_fraction=1.0) if a.clean_rep else recipe
        sampler = crops.Sampler(c, train, meta, rep_recipe, crops._device_stats(recipe, c, train, prior))
        x, _ = crops.eval_windows(c, test, meta, recipe, prior, copy=0, seed=recipe.seed)
        pf = crops.predict_float(model, x)
        y = c.y[test]
        uar_f = crops.scores(y, pf, {})["clip"]["all"]["uar"]
        for n in a.rep:
            rep = np.concatenate([sampler.batch()[0][..., 0] for _ in range(-(-n // recipe.batch_size))])[:n]
            for mode in a.mode:
                try:
                    with tempfile.TemporaryDirectory() as tmp:
                        path = Path(tmp) / "m.tflite"
                        path.write_bytes(quantize.embed_metadata(convert(model, recipe.arch, rep, mode), meta))
                        pq = crops.predict_tflite(path, x)
                except Exception as e:  # the converter refuses some ops in 16x8: say so, go on
                    print(json.dumps({"run": str(a.run), "fold": k, "mode": mode, "failed": str(e)[:300]}))
                    continue
                agree = evaluate.agreement(pf.reshape(-1, len(LABELS)), pq.reshape(-1, len(LABELS)))
                uar_q = crops.scores(y, pq, {})["clip"]["all"]["uar"]
                print(json.dumps({"run": str(a.run), "fold": k, "rep": n, "mode": mode, "clean_rep": a.clean_rep,
                                  "agreement": round(agree, 4), "quantised clip UAR": round(uar_q, 4),
                                  "float clip UAR": round(uar_f, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
