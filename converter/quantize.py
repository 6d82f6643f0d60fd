"""Full-integer int8 post-training quantisation and the self-describing model file."""

from __future__ import annotations

import numpy as np

from edge.model import METADATA_NAME, ModelMetadata, read_model_file

from .architectures import build, tf

# ops whose arithmetic must run on int8 tensors in a full-int8 model
INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"}
FORBIDDEN_OPS = ("CUSTOM:Flex", "WHILE", "CUSTOM:TensorList")
# the oldest runtime we support (tflite-runtime 2.14) knows at most these op versions
MAX_OP_VERSIONS_2_14 = {"FULLY_CONNECTED": 11, "CONV_2D": 7, "DEPTHWISE_CONV_2D": 7, "SOFTMAX": 3,
                        "UNIDIRECTIONAL_SEQUENCE_LSTM": 4, "QUANTIZE": 3, "DEQUANTIZE": 5, "MEAN": 3,
                        "RESHAPE": 1, "MAX_POOL_2D": 3, "AVERAGE_POOL_2D": 3, "ADD": 5, "MUL": 7}


def static_batch_copy(model, arch: str):
    """The same network with batch size 1, which the converter needs to fuse an int8 LSTM."""
    _, frames, bands, _ = model.input_shape
    copy = build(arch, frames, bands, model.output_shape[-1], batch_size=1)
    copy.set_weights(model.get_weights())
    return copy


def to_tflite(model, arch: str, representative: np.ndarray, int8: bool = True) -> bytes:
    """Convert a trained model. int8: full-integer with int8 input and output, calibrated on
    `representative` (normalised windows drawn from training audio)."""
    conv = tf.lite.TFLiteConverter.from_keras_model(static_batch_copy(model, arch))
    if int8:
        def gen():
            for w in representative:
                yield [w[None, ..., None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def embed_metadata(tflite: bytes, meta: ModelMetadata) -> bytes:
    """Add (or replace) the `ser_edge` metadata entry in the flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(tflite))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME] if model.metadata else []
    buf = schema.BufferT()
    buf.data = np.frombuffer(meta.to_json().encode(), dtype=np.uint8)
    model.buffers.append(buf)
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(model.buffers) - 1
    model.metadata.append(md)
    return bytes(fbu.convert_object_to_bytearray(model))


def check_int8(path: str) -> list[str]:
    """Problems that keep a model from being a full-int8 model loadable by tflite-runtime 2.14.
    Empty list = fine. Reads the ops and tensor types straight from the flatbuffer."""
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
        if name in MAX_OP_VERSIONS_2_14 and v > MAX_OP_VERSIONS_2_14[name]:
            problems.append(f"{name} version {v} is newer than tflite-runtime 2.14 supports "
                            f"({MAX_OP_VERSIONS_2_14[name]})")
    if mf.inputs[0]["dtype"] != "int8" or mf.outputs[0]["dtype"] != "int8":
        problems.append(f"input/output are {mf.inputs[0]['dtype']}/{mf.outputs[0]['dtype']}, expected int8")
    return problems
