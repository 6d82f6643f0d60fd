"""Full-integer int8 post-training quantisation and the self-describing model file."""

from __future__ import annotations

import numpy as np

from edge.model import METADATA_NAME, ModelMetadata
from edge.model import int8_problems as check_int8  # noqa: F401  (one check, on the edge side)

from .architectures import build, tf


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
        full_int8(conv, lambda: ([w[None, ..., None].astype(np.float32)] for w in representative))
    return conv.convert()


def full_int8(conv, representative_batches) -> None:
    """Set a TFLiteConverter to full-integer int8: builtin int8 ops only, int8 input and output,
    calibrated on `representative_batches()` (a generator function of input lists)."""
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_batches
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8


def write_model(model, arch: str, representative: np.ndarray, meta: ModelMetadata, path, int8: bool = True):
    """Convert (int8 calibrated on `representative`, or float) and write it with its metadata."""
    path.write_bytes(embed_metadata(to_tflite(model, arch, representative, int8=int8), meta))
    return path


def embed_metadata(tflite: bytes, meta: ModelMetadata) -> bytes:
    """Add (or replace) the `ser_edge` metadata entry in the flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(tflite))
    data = np.frombuffer(meta.to_json().encode(), dtype=np.uint8)
    model.metadata = model.metadata or []
    for md in model.metadata:
        if md.name.decode() == METADATA_NAME:  # replace in place: re-stamping leaves no orphan buffer
            model.buffers[md.buffer].data = data
            break
    else:
        buf = schema.BufferT()
        buf.data = data
        model.buffers.append(buf)
        md = schema.MetadataT()
        md.name = METADATA_NAME
        md.buffer = len(model.buffers) - 1
        model.metadata.append(md)
    return bytes(fbu.convert_object_to_bytearray(model))
