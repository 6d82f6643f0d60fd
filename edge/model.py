"""The model file: reading its embedded metadata and ops, choosing an interpreter, int8 inference.

A model is one `.tflite` file. Its flatbuffer carries a metadata entry named `ser_edge` holding JSON:
labels, feature settings, window and hop, normalisation, training data and metrics. Nothing else is
needed to run it. The flatbuffer is read here with a few lines of struct unpacking, so the device needs
neither TensorFlow nor the flatbuffers package.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .features import FeatureConfig, FeatureConfigError

METADATA_NAME = "ser_edge"
DEFAULT_MODEL = Path(__file__).parent / "models" / "default.tflite"


class ModelError(ValueError):
    """A model file that cannot be used. The message names the file and what was expected."""


# --------------------------------------------------------------------------------------------------
# Minimal flatbuffer reader for the TFLite schema (tensorflow/lite/schema/schema.fbs)

TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
                15: "uint32", 16: "uint16", 17: "int4"}

BUILTIN_OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
               6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 16: "LSTM", 17: "MAX_POOL_2D",
               18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH",
               32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 43: "SQUEEZE",
               44: "UNIDIRECTIONAL_SEQUENCE_LSTM", 45: "STRIDED_SLICE", 47: "EXP", 49: "SPLIT",
               52: "BIDIRECTIONAL_SEQUENCE_LSTM", 55: "MAXIMUM", 70: "EXPAND_DIMS", 74: "SUM",
               77: "SHAPE", 78: "POW", 82: "REDUCE_MAX", 83: "PACK", 84: "LOGICAL_OR", 88: "UNPACK",
               97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU",
               102: "SPLIT_V", 111: "ELU", 114: "QUANTIZE", 117: "HARD_SWISH", 119: "WHILE", 126: "BATCH_MATMUL",
               150: "GELU"}


class _Table:
    """A flatbuffer table: field lookups through its vtable."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt, self.vt_len = vt, struct.unpack_from("<H", buf, vt)[0]

    def _field(self, i: int) -> int:
        o = 4 + 2 * i
        if o >= self.vt_len:
            return 0
        off = struct.unpack_from("<H", self.buf, self.vt + o)[0]
        return self.pos + off if off else 0

    def scalar(self, i: int, fmt: str, default=0):
        p = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, p)[0] if p else default

    def _vector(self, i: int) -> tuple[int, int]:
        p = self._field(i)
        if not p:
            return 0, 0
        start = p + struct.unpack_from("<I", self.buf, p)[0]
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def tables(self, i: int) -> list[_Table]:
        start, n = self._vector(i)
        return [_Table(self.buf, start + 4 * k + struct.unpack_from("<I", self.buf, start + 4 * k)[0])
                for k in range(n)]

    def ints(self, i: int, fmt: str = "i") -> list[int]:
        start, n = self._vector(i)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start)) if n else []

    def bytes_(self, i: int) -> bytes:
        start, n = self._vector(i)
        return bytes(self.buf[start : start + n])

    def string(self, i: int) -> str:
        return self.bytes_(i).decode("utf-8", "replace")


@dataclass
class OpInfo:
    name: str
    version: int
    inputs: list[str]  # dtypes of the op's input tensors (weights included)
    outputs: list[str]


@dataclass
class ModelFile:
    """What the flatbuffer says: ops, input/output tensors, embedded metadata."""

    path: str
    size: int
    sha256: str
    ops: list[OpInfo]
    op_versions: dict[str, int]
    inputs: list[dict]
    outputs: list[dict]
    metadata: dict[str, bytes] = field(default_factory=dict)


def read_model_file(path: str | Path) -> ModelFile:
    """Parse a .tflite file; ModelError naming the file when it is not one."""
    path = str(path)
    try:
        buf = Path(path).read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read model ({e.strerror})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no 'TFL3' identifier); expected a .tflite file")
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = []
        for oc in model.tables(1):
            code = max(oc.scalar(0, "b"), oc.scalar(3, "i"))
            name = BUILTIN_OPS.get(code, f"BUILTIN_{code}")
            if code == 32:
                name = "CUSTOM:" + oc.string(1)
            codes.append((name, oc.scalar(2, "i", 1)))
        sub = model.tables(2)[0]
        tensors = sub.tables(0)

        def describe(t: _Table) -> dict:
            return {"name": t.string(3), "shape": t.ints(0), "dtype": TENSOR_TYPES.get(t.scalar(1, "b"), "?")}

        ops = []
        for op in sub.tables(3):
            name, version = codes[op.scalar(0, "I")]
            ins = [TENSOR_TYPES.get(tensors[i].scalar(1, "b"), "?") for i in op.ints(1) if i >= 0]
            outs = [TENSOR_TYPES.get(tensors[i].scalar(1, "b"), "?") for i in op.ints(2) if i >= 0]
            ops.append(OpInfo(name, version, ins, outs))
        buffers = model.tables(4)
        metadata = {}
        for md in model.tables(6):
            b = buffers[md.scalar(1, "I")]
            data = b.bytes_(0)
            if not data and b.scalar(1, "Q"):  # large models keep buffers after the flatbuffer
                off, n = b.scalar(1, "Q"), b.scalar(2, "Q")
                data = buf[off : off + n]
            metadata[md.string(0)] = data
        inputs = [describe(tensors[i]) for i in sub.ints(1)]
        outputs = [describe(tensors[i]) for i in sub.ints(2)]
    except (struct.error, IndexError, ValueError) as e:
        raise ModelError(f"{path}: corrupt or truncated TFLite model ({e})") from None
    versions: dict[str, int] = {}
    for name, v in codes:
        versions[name] = max(v, versions.get(name, 0))
    return ModelFile(path, len(buf), hashlib.sha256(buf).hexdigest(), ops, versions, inputs, outputs, metadata)


# ops whose arithmetic must run on int8 tensors in a full-int8 model
INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"}
FORBIDDEN_OPS = ("CUSTOM:Flex", "WHILE", "CUSTOM:TensorList")
# the oldest runtime we support (tflite-runtime 2.14) registers at most these op versions; an op not
# listed here has not been checked against it and is reported
MAX_OP_VERSIONS_2_14 = {"FULLY_CONNECTED": 11, "CONV_2D": 7, "DEPTHWISE_CONV_2D": 7, "SOFTMAX": 3,
                        "UNIDIRECTIONAL_SEQUENCE_LSTM": 4, "QUANTIZE": 3, "DEQUANTIZE": 5, "MEAN": 3,
                        "RESHAPE": 1, "MAX_POOL_2D": 3, "AVERAGE_POOL_2D": 3, "ADD": 5, "MUL": 7,
                        "STRIDED_SLICE": 7, "CONCATENATION": 4, "REDUCE_MAX": 3}


def int8_problems(path: str | Path) -> list[str]:
    """Problems that keep a model from being a full-int8 model loadable by tflite-runtime 2.14.
    Empty list = fine. Read straight from the flatbuffer (no interpreter needed)."""
    mf = read_model_file(path)
    problems = []
    for op in mf.ops:
        if op.name in INT8_OPS:
            acts = op.inputs[:1] + op.outputs
            if any(t not in ("int8",) for t in acts):
                problems.append(f"{op.name} runs on {acts}, expected int8 activations")
        if op.name not in ("QUANTIZE", "DEQUANTIZE") and op.inputs[:1] == ["float32"]:
            problems.append(f"{op.name} runs in float32 (a float island between QUANTIZE/DEQUANTIZE)")
        if op.name.startswith(FORBIDDEN_OPS):
            problems.append(f"{op.name} is not available in plain tflite-runtime")
    for name, v in mf.op_versions.items():
        if name not in MAX_OP_VERSIONS_2_14:
            problems.append(f"{name} is not among the ops checked against tflite-runtime 2.14")
        elif v > MAX_OP_VERSIONS_2_14[name]:
            problems.append(f"{name} version {v} is newer than tflite-runtime 2.14 supports "
                            f"({MAX_OP_VERSIONS_2_14[name]})")
    if mf.inputs[0]["dtype"] != "int8" or mf.outputs[0]["dtype"] != "int8":
        problems.append(f"input/output are {mf.inputs[0]['dtype']}/{mf.outputs[0]['dtype']}, expected int8")
    return problems


# --------------------------------------------------------------------------------------------------
# Metadata


@dataclass
class ModelMetadata:
    """Everything needed to interpret a model's input and output. Stored as JSON in the model file.

    labels:       class names in output order
    features:     the front end's settings (edge.features.FeatureConfig)
    window_s / hop_s: the analysis window the model sees, and how often it is evaluated
    frames:       feature frames per window (= features.frames_for(window_s))
    normalisation: "window_mean" (subtract each band's mean over the window, then divide by `scale`),
                  "global" (subtract `mean`, divide by `scale`, per band) or "device" (subtract the
                  running mean of this device's speech, divide by its running std, per band; `mean`
                  and `scale` are the training prior they start from, see edge.adapt). Either way log energies are
                  first floored at `floor_db` below the window's maximum, so digital silence cannot
                  produce huge negative values.
    mean, scale:  per-band statistics from the training data
    extra:        provenance: training data, licences, metrics, version, recipe hash
    """

    labels: list[str]
    features: FeatureConfig
    window_s: float
    hop_s: float
    frames: int
    normalisation: str = "window_mean"
    floor_db: float = 80.0
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in ("labels", "window_s", "hop_s", "frames", "normalisation", "floor_db", "mean",
                                           "scale", "extra")}
        d["features"] = self.features.to_dict()
        d["format"] = 1
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        d = json.loads(text)
        d.pop("format", None)
        d["features"] = FeatureConfig.from_dict(d["features"])
        return cls(**d)

    def normalise(self, window: np.ndarray, stats=None) -> np.ndarray:
        """(frames, bands) features of one window -> the model's float input. `stats` (an
        edge.adapt.SpeechStats) is used by "device" normalisation; without it the training prior is."""
        w = np.asarray(window, np.float64)
        if self.features.kind == "logfbank" and self.floor_db:
            w = np.maximum(w, w.max() - self.floor_db * np.log(10) / 10)  # dB -> natural log of power
        if self.normalisation == "window_mean":
            w = w - w.mean(axis=0)
        elif self.normalisation == "device":  # this device's running speech statistics (edge.adapt)
            mean, std = (stats.mean, stats.std) if stats is not None else (self.mean, self.scale)
            return ((w - np.asarray(mean)) / np.asarray(std)).astype(np.float32)
        elif self.normalisation == "global":
            w = w - np.asarray(self.mean)
        scale = np.asarray(self.scale) if self.scale else 1.0
        return (w / scale).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Interpreter


def load_interpreter_class():
    """The first interpreter package installed: tflite_runtime, ai_edge_litert, then TensorFlow.

    In a process that has already imported TensorFlow (the converter), its own interpreter is used:
    a second copy of the TFLite runtime in the same process fails ("vector::reserve").
    """
    import os
    import sys

    wanted = os.environ.get("SER_EDGE_RUNTIME", "")  # force one: tflite_runtime, ai_edge_litert, tensorflow
    if wanted:
        try:
            if wanted == "tensorflow":
                import tensorflow as tf

                return tf.lite.Interpreter, wanted
            mod = __import__(f"{wanted}.interpreter", fromlist=["Interpreter"])
            return mod.Interpreter, wanted
        except ImportError:
            raise ModelError(f"SER_EDGE_RUNTIME={wanted}: that interpreter package is not installed") from None
    if sys.modules.get("tensorflow") is not None:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # workstation fallback only; never a device dependency

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise ModelError("no TFLite interpreter installed: pip install tflite-runtime (Python <= 3.11) "
                         "or ai-edge-litert (Python >= 3.12)") from None


def interpreter_version() -> str:
    _, name = load_interpreter_class()
    try:
        from importlib.metadata import version

        return f"{name} {version(name.replace('_', '-') if name != 'tensorflow' else 'tensorflow-cpu')}"
    except Exception:
        return name


def quantise(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """Float -> int8 with a tensor's (scale, zero point), as TFLite does."""
    return np.clip(np.round(np.asarray(x) / scale + zero), -128, 127).astype(np.int8)


def dequantise(q: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """int8 -> float with a tensor's (scale, zero point)."""
    return ((np.asarray(q).astype(np.float32) - zero) * scale).astype(np.float32)


class Classifier:
    """A loaded model: `predict(window_features) -> probabilities` in label order.

    Checks at load that the file is a TFLite model with our metadata, that the labels match the output
    size and that the input shape matches the feature settings; each failure is one ModelError naming
    the file. Handles int8 (quantise input, dequantise output with the model's scales) and float models.
    """

    def __init__(self, path: str | Path = DEFAULT_MODEL, num_threads: int = 1, require_int8: bool = False):
        self.path = str(path)
        self.file = read_model_file(self.path)
        raw = self.file.metadata.get(METADATA_NAME)
        if raw is None:
            raise ModelError(f"{self.path}: no '{METADATA_NAME}' metadata; expected a model written by ser-convert")
        try:
            self.meta = ModelMetadata.from_json(raw)
        except (ValueError, KeyError, TypeError, FeatureConfigError) as e:
            raise ModelError(f"{self.path}: unreadable '{METADATA_NAME}' metadata ({e})") from None
        if require_int8 and self.file.inputs[0]["dtype"] != "int8":  # decided from the file, before loading it
            raise ModelError(f"{self.path}: float model where a full-int8 model is expected "
                             "(ser-convert writes int8; [model] require_int8 = false runs it anyway)")
        Interpreter, self.runtime = load_interpreter_class()
        try:
            self.interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: the interpreter ({self.runtime}) refused the model: {first}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape = tuple(int(s) for s in self.input["shape"])
        want = (1, self.meta.frames, self.meta.features.num_features)
        if shape[:3] != want or any(s != 1 for s in shape[3:]):
            raise ModelError(f"{self.path}: input shape {list(shape)} does not match the feature settings "
                             f"(expected [1, {want[1]}, {want[2]}(, 1)])")
        n_out = int(np.prod(self.output["shape"]))
        if n_out != len(self.meta.labels):
            raise ModelError(f"{self.path}: {len(self.meta.labels)} labels in metadata but the model has "
                             f"{n_out} outputs")
        self.is_int8 = self.input["dtype"] == np.int8
        self._in_scale, self._in_zero = (self.input["quantization"] if self.is_int8 else (1.0, 0))
        self._out_scale, self._out_zero = self.output["quantization"]
        self._shape = shape

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    def quantise(self, x: np.ndarray) -> np.ndarray:
        return quantise(x, self._in_scale, self._in_zero)

    def predict(self, window_features: np.ndarray, stats=None) -> np.ndarray:
        """(frames, bands) raw features of one window -> probabilities (len(labels),)."""
        return self.predict_normalised(self.meta.normalise(window_features, stats))

    def predict_normalised(self, x: np.ndarray) -> np.ndarray:
        """Model input already normalised (float) -> probabilities."""
        x = np.asarray(x, np.float32).reshape(self._shape)
        if self.is_int8:
            x = self.quantise(x)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"]).reshape(-1)
        if self.output["dtype"] == np.int8:
            return dequantise(y, self._out_scale, self._out_zero)
        return y.astype(np.float32)
