"""Size, MACs, float and full-int8 conversion (in a child process: the calibrator can crash), running a
.tflite on arrays, and latency with the edge interpreter in a process without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.model import dequantise, quantise

from ..corpora import LABELS
from ..quantize import full_int8
from .networks import SEEDS, _tf


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
    full_int8(conv, gen)
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
    root = Path(__file__).resolve().parents[2]
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
                a = quantise(a, *d["quantization"])
            it.set_tensor(d["index"], a.astype(d["dtype"]))
        it.invoke()
        o = it.get_tensor(out["index"])
        o = dequantise(o, *out["quantization"]) if out["dtype"] == np.int8 else o.astype(np.float32)
        res.append(o[0])
    return np.stack(res)


def latency(path: Path) -> dict:
    """Median invoke time with the edge interpreter, in a fresh process without TensorFlow."""
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, "-m", "edge.bench", str(path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"},
    )
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])
