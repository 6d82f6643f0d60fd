"""The five published systems this product was designed from, rebuilt as baselines.

Each seed is a feature recipe (through edge.features, like everything else here) plus a network. The zoo
trains them on the same speaker-independent folds as our compact models (converter.dataset.speaker_folds,
seed 0: RAVDESS actors held out, TESS always in training), once on a random 80/20 split for comparison with
the papers (labelled: speakers are shared), tries full-int8 conversion, and times each model file with the
edge interpreter in a separate process (no TensorFlow there).

Unit of evaluation: one utterance = one input, as in the papers (our device model is scored per clip the
same way: mean of its windows, `int8_clip` in docs/cv-dscnn.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from edge import features as F
from edge.audio import read_audio

from .corpora import LABELS, load_corpora
from .dataset import crop, speaker_folds, speech_centre

SR = 16000


# ---------------------------------------------------------------- features (one function per seed recipe)

def _fixed(x: np.ndarray, seconds: float) -> np.ndarray:
    """`seconds` of audio centred on the speech (padding with faint noise, like our window crops)."""
    return crop(x, speech_centre(x), int(seconds * SR))


def _fit_frames(feat: np.ndarray, frames: int) -> np.ndarray:
    out = np.zeros((frames, feat.shape[1]), np.float32)
    out[: min(frames, len(feat))] = feat[:frames]
    return out


def feat_logmel128_mfcc13(x):
    """Seed 1 hybrid: a 128x128 log-mel image (3 s, hop 3 s/128) and the 13 MFCCs averaged over the utterance."""
    y = _fixed(x, 3.0)
    image = _fit_frames(F.logfbank(y, SR, winlen=0.025, winstep=3.0 / 128, nfilt=128, nfft=1024), 128)
    mfcc = F.mfcc(x, SR, numcep=13).mean(axis=0).astype(np.float32)
    return [image[..., None], mfcc]


def feat_logmel40_deltas(x):
    """Seed 2 ACRNN: 40 log-mel bands, 25 ms / 10 ms, 3 s; static, delta and delta-delta as three channels."""
    y = _fixed(x, 3.0)
    mel = _fit_frames(F.logfbank(y, SR, nfilt=40), 300)
    d1 = F.delta(mel, 2)
    d2 = F.delta(d1, 2)
    return [np.stack([mel, d1, d2], axis=-1).astype(np.float32)]


def _rms_zcr_mfcc(y, numcep=20):
    """Per frame of 2048 samples, hop 512 (librosa's defaults, as in seeds 3 and 5): RMS, ZCR and 20 MFCCs."""
    kw = dict(winlen=2048 / SR, winstep=512 / SR)
    m = F.mfcc(y, SR, numcep=numcep, nfilt=40, nfft=2048, **kw)
    return np.column_stack([F.frame_rms(y, SR, **kw), F.frame_zcr(y, SR, **kw), m]).astype(np.float32)


def feat_rms_zcr_mfcc_3s(x):
    """Seed 3: RMS, ZCR, MFCC per frame over 3 s."""
    return [_fit_frames(_rms_zcr_mfcc(_fixed(x, 3.0)), 94)]


def feat_logmel_lflb(x):
    """Seed 4 2-D: log-mel (128 bands) of 3 s at 11.7 ms hop -> 256 frames."""
    y = _fixed(x, 3.0)
    return [_fit_frames(F.logfbank(y, SR, winstep=3.0 / 256, nfilt=128, nfft=1024), 256)[..., None]]


def feat_raw_3s(x):
    """Seed 4 1-D: the waveform itself, 3 s."""
    y = _fixed(x, 3.0)
    return [(y / (np.max(np.abs(y)) + 1e-6)).astype(np.float32)[:, None]]


def feat_rms_zcr_mfcc_offset(x):
    """Seed 5: ZCR, RMS, MFCC over 2.5 s starting 0.6 s into the file (the seed's librosa.load offset)."""
    y = np.zeros(int(2.5 * SR), np.float32)
    part = x[int(0.6 * SR): int(3.1 * SR)]
    y[: len(part)] = part
    return [_fit_frames(_rms_zcr_mfcc(y), 79)]


def feat_ours_window(x):
    """Our device model's input, for the same-protocol comparison: the default front end (40 log-mel,
    window-mean normalised) on the speech-centred 2 s window."""
    from .dataset import default_metadata, window_features

    meta = default_metadata()
    return [window_features(_fixed(x, meta.window_s), meta)[..., None].astype(np.float32)]


# ---------------------------------------------------------------- networks

def _tf():
    from .architectures import tf

    return tf


def adrnn_clstm(shapes, n):
    """Seed 1: dilated residual convolutions + BiLSTM + attention on the log-mel image; MFCC -> dense
    up-sampling -> Conv2D -> ConvLSTM2D; fused, dense layers with dropout."""
    tf = _tf()
    L = tf.keras.layers
    img, vec = tf.keras.Input(shapes[0], name="logmel"), tf.keras.Input(shapes[1], name="mfcc")
    x = L.Conv2D(32, 3, padding="same", activation="relu")(img)
    for rate, ch in ((1, 32), (2, 64), (4, 64), (8, 128)):
        sc = L.Conv2D(ch, 1)(x)
        y = L.Conv2D(ch, 3, padding="same", dilation_rate=rate)(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.Conv2D(ch, 3, padding="same", dilation_rate=rate)(y)
        y = L.BatchNormalization()(y)
        x = L.MaxPooling2D(2)(L.ReLU()(L.Add()([sc, y])))  # 128 -> 8 over four blocks
    t, f, c = x.shape[1:]
    seq = L.Bidirectional(L.LSTM(64, return_sequences=True))(L.Reshape((t, f * c))(x))
    score = L.Dense(1, activation="tanh")(seq)
    weights = L.Softmax(axis=1)(score)
    a = L.Lambda(lambda z: tf.reduce_sum(z[0] * z[1], axis=1))([seq, weights])
    m = L.Dense(256, activation="relu")(vec)  # up-sample 13 -> 4x8x8
    m = L.Reshape((4, 8, 8, 1))(m)
    m = L.TimeDistributed(L.Conv2D(8, 3, padding="same", activation="relu"))(m)
    m = L.Flatten()(L.ConvLSTM2D(8, 3, padding="same")(m))
    z = L.Concatenate()([a, m])
    z = L.Dropout(0.3)(L.Dense(128, activation="relu")(z))
    z = L.Dropout(0.3)(L.Dense(64, activation="relu")(z))
    return tf.keras.Model([img, vec], L.Dense(n, activation="softmax")(z), name="adrnn_clstm")


def acrnn(shapes, n):
    """Seed 2: 5x2 convolutions with 128 then 256 maps, one 2x2 max-pool, a 768-unit linear layer per time
    step, BiLSTM 128 per direction, attention pooling, dense 64 + batch norm, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="logmel_deltas")
    x = L.Conv2D(128, (5, 2), padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(256, (5, 2), padding="same", activation="relu")(x)
    t, f, c = x.shape[1:]
    x = L.Dense(768)(L.Reshape((t, f * c))(x))
    seq = L.Bidirectional(L.LSTM(128, return_sequences=True))(x)
    weights = L.Softmax(axis=1)(L.Dense(1, activation="tanh")(seq))
    a = L.Lambda(lambda z: tf.reduce_sum(z[0] * z[1], axis=1))([seq, weights])
    z = L.ReLU()(L.BatchNormalization()(L.Dense(64)(a)))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(z), name="acrnn")


def _lstm_stack(shapes, n, bidirectional: bool, name: str):
    tf = _tf()
    L = tf.keras.layers
    wrap = (lambda layer: L.Bidirectional(layer)) if bidirectional else (lambda layer: layer)
    inp = tf.keras.Input(shapes[0], name="rms_zcr_mfcc")
    x = wrap(L.LSTM(64, return_sequences=True))(inp)
    x = wrap(L.LSTM(64))(x)
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name=name)


def lstm_rms_zcr_mfcc(shapes, n):
    """Seed 3: two LSTM layers of 64 on per-frame RMS, ZCR and MFCC."""
    return _lstm_stack(shapes, n, False, "lstm_rms_zcr_mfcc")


def bilstm_rms_zcr_mfcc(shapes, n):
    """Seed 3, bidirectional variant."""
    return _lstm_stack(shapes, n, True, "bilstm_rms_zcr_mfcc")


def _lflb_stack(x, conv, pool, pools):
    L = _tf().keras.layers
    for maps, p in zip((64, 64, 128, 128), pools):
        x = L.ELU()(L.BatchNormalization()(conv(maps)(x)))
        x = pool(p)(x)
    return x


def cnn_lstm_2d_lflb(shapes, n):
    """Seed 4: four local-feature-learning blocks (3x3 conv, batch norm, ELU, max-pool 2/4/4/4; 64, 64,
    128, 128 maps) on the log-mel, an LSTM of 256, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="logmel")
    x = _lflb_stack(inp, lambda m: L.Conv2D(m, 3, padding="same"), L.MaxPooling2D, (2, 4, 4, 4))
    t, f, c = x.shape[1:]
    x = L.LSTM(256)(L.Reshape((t, f * c))(x))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn_lstm_2d_lflb")


def cnn_lstm_1d(shapes, n):
    """Seed 4: the same blocks in 1-D on the raw waveform (pools 4/4/4/4), LSTM 256."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="waveform")
    x = _lflb_stack(inp, lambda m: L.Conv1D(m, 3, padding="same"), L.MaxPooling1D, (4, 4, 4, 4))
    x = L.LSTM(256)(x)
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn_lstm_1d")


def cnn1d_zcr_rms_mfcc(shapes, n):
    """Seed 5: Conv1D 512/512/256/256/128 (kernel 5) with batch norm and max-pool, dense 512, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="zcr_rms_mfcc")
    x = inp
    for maps in (512, 512, 256, 256, 128):
        x = L.Conv1D(maps, 5, padding="same", activation="relu")(x)
        x = L.MaxPooling1D(2, padding="same")(L.BatchNormalization()(x))
    x = L.Dropout(0.2)(L.Dense(512, activation="relu")(L.Flatten()(x)))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn1d_zcr_rms_mfcc")


def dscnn_ours(shapes, n):
    """Our compact model (converter.architectures.dscnn), trained here under the zoo's protocol."""
    from .architectures import dscnn

    return dscnn(shapes[0][0], shapes[0][1], n)


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Seed:
    name: str
    source: str  # which seed system (numbered as in issue 7)
    paper_claim: str
    features: Callable
    build: Callable
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    budget_epochs: int = 5  # what two CPU cores allow (see ZooSettings)
    notes: str = ""


SEEDS = {s.name: s for s in [
    Seed("adrnn_clstm", "1", "92.36 % on RAVDESS, random 80/20 split, 20 epochs", feat_logmel128_mfcc13,
         adrnn_clstm, notes="channel widths 32-128 and ConvLSTM of 8 maps are our choice"),
    Seed("acrnn", "2", "68 % on IEMOCAP (4 classes, leave-speaker-out)", feat_logmel40_deltas, acrnn,
         batch_size=32, notes="3-D log-mel (static, delta, delta-delta)"),
    Seed("lstm_rms_zcr_mfcc", "3", "96-97 % on RAVDESS + TESS, random split", feat_rms_zcr_mfcc_3s,
         lstm_rms_zcr_mfcc, optimizer="rmsprop", budget_epochs=30),
    Seed("bilstm_rms_zcr_mfcc", "3", "96-97 % on RAVDESS + TESS, random split", feat_rms_zcr_mfcc_3s,
         bilstm_rms_zcr_mfcc, optimizer="rmsprop", budget_epochs=30),
    Seed("cnn_lstm_2d_lflb", "4", "80.68 % validation on EmoDB", feat_logmel_lflb, cnn_lstm_2d_lflb),
    Seed("cnn_lstm_1d", "4", "80.68 % (2-D) on EmoDB; 1-D lower", feat_raw_3s, cnn_lstm_1d),
    Seed("dscnn_ours", "ours", "—", feat_ours_window, dscnn_ours, budget_epochs=30,
         notes="our compact model under the zoo protocol: no augmentation, same data and fold"),
    Seed("cnn1d_zcr_rms_mfcc", "5", "96.03 % on combined corpora, random split", feat_rms_zcr_mfcc_offset,
         cnn1d_zcr_rms_mfcc, budget_epochs=30, notes="frames as the time axis, 22 features as channels"),
]}


# ---------------------------------------------------------------- data

def _features_one(args):
    path, names = args
    x = read_audio(path)
    return [SEEDS[n].features(x) for n in names]


def select_utterances(utts, tess_every: int = 1, subset: int = 0):
    """Every `tess_every`-th TESS file (TESS is two speakers saying 200 words in 7 ways: a quarter keeps
    its variety at a quarter of the cost), then every `subset`-th utterance (smoke tests)."""
    keep = np.arange(len(utts))
    if tess_every > 1:
        tess = np.array([u.corpus == "tess" for u in utts])
        keep = keep[~tess | (np.cumsum(tess) % tess_every == 0)]
    if subset > 1:
        keep = keep[::subset]
    return [utts[i] for i in keep]


def load_features(names: list[str], data_dir=None, corpora=("ravdess", "tess"), cache_dir=Path("runs/cache"),
                  workers: int = 2, tess_every: int = 1, subset: int = 0):
    """Per seed: a list of input arrays (n_utterances, ...); plus the utterance table. Cached as .npz."""
    utts = select_utterances(load_corpora(data_dir, corpora), tess_every, subset)
    out, todo = {}, []
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"{len(utts)}-{'-'.join(corpora)}"
    for n in names:
        f = cache_dir / f"zoo-{SEEDS[n].features.__name__}-{key}.npz"
        if f.exists():
            with np.load(f) as z:
                out[n] = [z[k] for k in sorted(z.files)]
        else:
            todo.append(n)
    if todo:
        t0 = time.time()
        with Pool(workers) as pool:
            rows = pool.map(_features_one, [(u.path, todo) for u in utts], chunksize=16)
        for j, n in enumerate(todo):
            arrays = [np.stack([r[j][i] for r in rows]) for i in range(len(rows[0][j]))]
            np.savez(cache_dir / f"zoo-{SEEDS[n].features.__name__}-{key}.npz",
                     **{f"a{i}": a for i, a in enumerate(arrays)})
            out[n] = arrays
        print(f"features for {todo}: {time.time() - t0:.0f} s", flush=True)
    return utts, out


def standardise(arrays, train_idx):
    """Per-feature (last axis) mean and std from the training part only."""
    out = []
    for a in arrays:
        axes = tuple(range(a.ndim - 1))
        mu = a[train_idx].mean(axis=axes, keepdims=True)
        sd = a[train_idx].std(axis=axes, keepdims=True) + 1e-6
        out.append(((a - mu) / sd).astype(np.float32))
    return out


# ---------------------------------------------------------------- size, MACs, conversion, latency

def count_macs(model) -> int:
    """Multiply-accumulates per inference, counted layer by layer (conv, dense, recurrent)."""
    tf = _tf()
    L = tf.keras.layers
    total = 0

    def lstm_macs(layer, in_shape):
        steps, dim = in_shape[1], in_shape[-1]
        return 4 * (dim + layer.units) * layer.units * steps

    def visit(layer, in_shape, out_shape):
        nonlocal total
        if isinstance(layer, L.TimeDistributed):
            steps = in_shape[1]
            inner_in = (in_shape[0],) + tuple(in_shape[2:])
            inner_out = (out_shape[0],) + tuple(out_shape[2:])
            before = total
            visit(layer.layer, inner_in, inner_out)
            total = before + (total - before) * steps
        elif isinstance(layer, L.Bidirectional):
            total += 2 * lstm_macs(layer.forward_layer, in_shape)
        elif isinstance(layer, L.LSTM):
            total += lstm_macs(layer, in_shape)
        elif isinstance(layer, L.ConvLSTM2D):
            kh, kw = layer.kernel_size
            steps, h, w, cin = in_shape[1:]
            total += steps * h * w * 4 * layer.filters * kh * kw * (cin + layer.filters)
        elif isinstance(layer, L.DepthwiseConv2D):
            total += int(np.prod(out_shape[1:])) * int(np.prod(layer.kernel_size))
        elif isinstance(layer, (L.Conv1D, L.Conv2D)):
            cin = in_shape[-1]
            total += int(np.prod(out_shape[1:])) * int(np.prod(layer.kernel_size)) * cin
        elif isinstance(layer, L.Dense):
            total += int(np.prod(out_shape[1:-1] or [1])) * in_shape[-1] * layer.units

    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        ins = layer.input_shape if not isinstance(layer.input_shape, list) else layer.input_shape[0]
        visit(layer, ins, layer.output_shape)
    return int(total)


def _converter(model):
    """A converter for the model at batch size 1 (fixed shapes let LSTMs become fused builtin ops)."""
    tf = _tf()
    shapes = [(1,) + tuple(i.shape[1:]) for i in model.inputs]
    fixed = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                        input_signature=[tf.TensorSpec(s, tf.float32) for s in shapes])
    return tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], model)


def _why(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    why = next((ln for ln in msg if "error" in ln.lower()), msg[0] if msg else type(e).__name__)
    return why.strip()[:200]


def to_float(model) -> tuple[bytes | None, str]:
    """Float32 conversion with builtin ops only (what plain tflite-runtime can run)."""
    conv = _converter(model)
    conv.target_spec.supported_ops = [_tf().lite.OpsSet.TFLITE_BUILTINS]
    try:
        return conv.convert(), "converted"
    except Exception as e:  # the converter raises many types; keep the first line of why
        return None, f"failed: {_why(e)}"


def to_int8(model, representative: list[np.ndarray]) -> tuple[bytes | None, str]:
    """Full-integer conversion (builtin int8 ops only). Returns (model bytes or None, what happened)."""
    tf = _tf()
    if len(representative) > 1:  # the calibrator feeds inputs in the converted model's order: find it
        flt, status = to_float(model)
        if flt is None:
            return None, status
        order = [d["shape"][1:].tolist() for d in _input_details(flt)]
        representative = [next(a for a in representative if list(a.shape[1:]) == s) for s in order]

    def gen():
        for i in range(len(representative[0])):
            yield [a[i: i + 1] for a in representative]

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        return conv.convert(), "converted"
    except Exception as e:
        return None, f"failed: {_why(e)}"


def to_int8_isolated(name: str, model, representative: list[np.ndarray], out: Path) -> tuple[bytes | None, str]:
    """to_int8 in a child process: TF's calibrator can crash the interpreter outright (it segfaults on
    adrnn_clstm's ConvLSTM2D branch), and a crash must cost one model's int8 row, not the whole run."""
    weights, rep = out.with_suffix(".weights.h5"), out.with_suffix(".rep.npz")
    model.save_weights(str(weights))
    np.savez(rep, *representative)
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "converter.zoo", "int8", name, str(weights), str(rep), str(out)],
                       capture_output=True, text=True, cwd=root, timeout=3600)
    weights.unlink(missing_ok=True)
    rep.unlink(missing_ok=True)
    if r.returncode:
        if r.returncode in (-11, 139):
            return None, f"failed: the converter crashed (exit {r.returncode}, signal 11 = segfault in calibration)"
        return None, f"failed: exit {r.returncode}: {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    status = (r.stdout.strip().splitlines() or ["failed: the conversion printed nothing"])[-1]
    return (out.read_bytes() if status == "converted" else None), status


def _int8_child(name, weights, rep, out) -> None:
    with np.load(rep) as z:
        representative = [z[f"arr_{i}"] for i in range(len(z.files))]
    model = SEEDS[name].build([a.shape[1:] for a in representative], len(LABELS))
    model.load_weights(weights)
    tfl, status = to_int8(model, representative)
    if tfl is not None:
        Path(out).write_bytes(tfl)
    print(status)


def _input_details(tflite: bytes) -> list[dict]:
    it = _tf().lite.Interpreter(model_content=tflite)
    return sorted(it.get_input_details(), key=lambda d: d["index"])


def run_tflite(path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """Scores from a .tflite file for every row of `inputs` (quantising int8 inputs as the file says)."""
    tf = _tf()
    it = tf.lite.Interpreter(model_path=str(path))
    it.allocate_tensors()
    ins, out = it.get_input_details(), it.get_output_details()[0]
    order = sorted(range(len(ins)), key=lambda k: ins[k]["index"])
    # match inputs to the model's by shape (the converter may reorder them)
    by_shape = {tuple(a.shape[1:]): a for a in inputs}
    res = []
    for i in range(len(inputs[0])):
        for d in (ins[k] for k in order):
            a = by_shape[tuple(d["shape"][1:])][i : i + 1]
            if d["dtype"] == np.int8:
                s, z = d["quantization"]
                a = np.clip(np.round(a / s + z), -128, 127).astype(np.int8)
            it.set_tensor(d["index"], a.astype(d["dtype"]))
        it.invoke()
        o = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            s, z = out["quantization"]
            o = (o - z) * s
        res.append(o[0])
    return np.stack(res)


LATENCY_SCRIPT = r"""
import json, sys, time, numpy as np
from edge.model import load_interpreter_class
cls, name = load_interpreter_class()
it = cls(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
rng = np.random.default_rng(0)
for d in it.get_input_details():
    info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
    x = rng.integers(-20, 20, d["shape"]) if info else rng.standard_normal(d["shape"])
    x = x.astype(d["dtype"])
    it.set_tensor(d["index"], x)
for _ in range(3):
    it.invoke()
times = []
t_end = time.perf_counter() + 3.0
while len(times) < 10 or (time.perf_counter() < t_end and len(times) < 200):
    t = time.perf_counter(); it.invoke(); times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"runtime": name, "p50_ms": float(np.median(times)), "runs": len(times)}))
"""


def latency(path: Path) -> dict:
    """Median invoke time with the edge interpreter, in a fresh process without TensorFlow."""
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, "-c", LATENCY_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"},
    )
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- training and the report


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
    from .train import set_seeds

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
    from . import evaluate

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
            from .quantize import check_int8

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
        from .dataset import random_split

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


# ---------------------------------------------------------------- the table


def our_model_on_same_folds(
    folds: list[list[str]], cv_path=Path("docs/cv-dscnn.json"), model_path=Path("edge/models/default.tflite")
) -> dict:
    """Our default model's cross-validation numbers for the same held-out speakers, and its size."""
    from .architectures import build
    from .dataset import default_metadata

    cv = json.loads(Path(cv_path).read_text())
    rows = [r for r in cv["fold_rows"] if r["held_out"].split() in folds]
    meta = default_metadata()
    model = build("dscnn", meta.frames, meta.features.nfilt, len(LABELS))
    return {
        "folds": [r["held_out"] for r in rows],
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "int8_bytes": Path(model_path).stat().st_size,
        "float_uar": float(np.mean([r["float UAR"] for r in rows])),
        "int8_uar": float(np.mean([r["int8 UAR"] for r in rows])),
        "int8_clip_uar": float(np.mean([r["int8_clip UAR"] for r in rows])),
        "int8_clip_uar_5fold": cv["int8_clip"]["all"]["uar"],
        "epochs": cv["recipe"]["epochs"],
        "int8_p50_ms": latency(Path(model_path)).get("p50_ms"),
    }


def _pct(v):
    return "—" if v is None else f"{100 * v:.1f}"


def _num(v, fmt=".2f"):
    return "—" if v is None else format(v, fmt)


def report_markdown(rows: list[dict], ours: dict | None) -> str:
    """The zoo table; `ours` = the shipped model's cross-validation numbers on the same fold."""
    r0 = rows[0]
    lines = [
        "| model | from | params | MACs | epochs | SI acc % | SI UAR % | int8 | int8 SI UAR % | int8 KB | "
        "random split acc % (speakers shared!) | paper claims | int8 p50 ms | float p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r.get("int8_status", "")
        lines.append(
            f"| `{r['name']}` | {'seed ' + r['source'] if r['source'].isdigit() else r['source']} | {r['params']:,} | "
            f"{r['macs'] / 1e6:.1f} M | {r['epochs']} | {_pct(r['float']['accuracy'])} | {_pct(r['float']['uar'])} | "
            f"{'yes' if ok == 'converted' else 'partly' if ok.startswith('converted') else '**no**'} | "
            f"{_pct(r.get('int8', {}).get('uar'))} | "
            f"{_num(r['int8_bytes'] / 1024 if r.get('int8_bytes') else None, '.0f')} | "
            f"{_pct(r.get('random_split', {}).get('accuracy'))} | {r['paper_claim']} | "
            f"{_num((r.get('int8_latency') or {}).get('p50_ms'))} | "
            f"{_num((r.get('float_latency') or {}).get('p50_ms'))} |"
        )
    if ours:
        lines.append(
            f"| **shipped `default.tflite`** (dscnn, full recipe) | ours | {ours['params']:,} | "
            f"{ours['macs'] / 1e6:.1f} M | "
            f"{ours['epochs']} | — | {_pct(ours['float_uar'])} (window) | yes | {_pct(ours['int8_uar'])} (window), "
            f"**{_pct(ours['int8_clip_uar'])} (clip)** | {ours['int8_bytes'] / 1024:.0f} | — | — | "
            f"{_num(ours.get('int8_p50_ms'))} | — |"
        )
    lines += [
        "",
        f"Protocol: fold 1 of the 5 speaker folds used everywhere in this project (held out: "
        f"{'; '.join(' '.join(f) for f in r0['folds'])}; TESS always in training), {r0.get('n_utterances', '?')} "
        "utterances (RAVDESS speech + every 4th TESS file), 8 classes (RAVDESS taxonomy), one input per "
        "utterance (each paper's own features, through `edge/features.py`), features standardised with "
        "training statistics, each paper's optimiser, batch 32. SI = speaker-independent (held-out actors). "
        "Random split: 80/20 over the same utterances, speakers in both parts: for comparison with the "
        "papers only. Latency: one thread, tflite-runtime, median of ≥ 10 invokes, x86 (not a Pi).",
        "",
    ]
    for r in rows:
        if r.get("int8_status") != "converted":
            lines.append(f"- `{r['name']}` ({r['epochs']} epochs) int8: {r.get('int8_status')}")
        if r.get("float_status", "converted") != "converted":
            lines.append(f"- `{r['name']}` float .tflite (builtin ops): {r['float_status']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the isolated int8 conversion (to_int8_isolated)
    if len(sys.argv) == 6 and sys.argv[1] == "int8":
        _int8_child(*sys.argv[2:])
