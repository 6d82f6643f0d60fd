"""Audio in: WAV files read with the standard library, resampling to 16 kHz in numpy.

Everything ends as float32 mono at `TARGET_RATE`, values in [-1, 1]. Live sources (microphone,
command, stdin) live in `edge.sources`; they use the same `Resampler`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_RATE = 16000
DEMO_RECORDING = Path(__file__).parent / "samples" / "demo.wav"  # bundled: `ser-edge demo`, benchmarks


class AudioError(ValueError):
    """A file that cannot be read as audio. The message names the file and what it is."""


# --------------------------------------------------------------------------------------------------
# WAV (RIFF) reading. The stdlib `wave` module refuses float and WAVE_FORMAT_EXTENSIBLE files, so the
# few chunks we need are parsed here by hand.

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class WavInfo:
    path: str
    samplerate: int
    channels: int
    bits: int
    is_float: bool
    frames: int
    data_offset: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def _what_is_it(head: bytes) -> str:
    """A short guess at what a non-WAV file is, for the error message."""
    if not head:
        return "an empty file"
    if head[:4] == b"fLaC":
        return "a FLAC file (convert it: sox IN.flac -r 16000 -c 1 OUT.wav)"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return f"an {head[8:12].decode()} file with a misleading name (convert it with sox to WAV)"
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return "an MP3 file"
    if head[:4] == b"OggS":
        return "an Ogg file"
    try:
        text = head.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
            return "a text file"
    except UnicodeDecodeError:
        pass
    return "not a RIFF/WAVE file"


def wav_info(path: str | Path) -> WavInfo:
    """Read the header of a WAV file; AudioError if it is not a PCM or float WAV we can decode."""
    path = str(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise AudioError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise AudioError(f"{path}: is {_what_is_it(head)}, expected a WAV (RIFF/WAVE) file")
        fmt = None
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                raise AudioError(f"{path}: truncated WAV, no data chunk found")
            cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                body = f.read(size)
                if len(body) < 16:
                    raise AudioError(f"{path}: truncated WAV format chunk")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, channels, rate, bits)
                if size % 2:
                    f.read(1)
            elif cid == b"data":
                if fmt is None:
                    raise AudioError(f"{path}: WAV data chunk before its format chunk")
                tag, channels, rate, bits = fmt
                if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT):
                    raise AudioError(f"{path}: WAV encoding 0x{tag:04x} is compressed; expected PCM or float")
                if tag == WAVE_FORMAT_PCM and bits not in (8, 16, 24, 32):
                    raise AudioError(f"{path}: {bits}-bit PCM is not supported; expected 8, 16, 24 or 32")
                if tag == WAVE_FORMAT_IEEE_FLOAT and bits not in (32, 64):
                    raise AudioError(f"{path}: {bits}-bit float is not supported; expected 32 or 64")
                if channels < 1 or rate < 1000 or rate > 768000:
                    raise AudioError(f"{path}: implausible WAV header ({channels} channels, {rate} Hz)")
                data_offset = f.tell()
                f.seek(0, 2)
                available = f.tell() - data_offset
                if size == 0xFFFFFFFF or size > available:  # streamed or truncated: take what is there
                    size = available
                frame_bytes = channels * bits // 8
                return WavInfo(path, rate, channels, bits, tag == WAVE_FORMAT_IEEE_FLOAT,
                               size // frame_bytes, data_offset)
            else:
                f.seek(size + (size % 2), 1)


def decode_pcm(raw: bytes, bits: int, channels: int, is_float: bool) -> np.ndarray:
    """Bytes of interleaved samples -> float32 mono in [-1, 1] (channels averaged)."""
    if is_float:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    # NaN or infinite samples (possible only in float files) are silence, not poison for the model
    if is_float and not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(x, -1.0, 1.0) if is_float else x


def iter_wav(path: str | Path, chunk_seconds: float = 1.0, target_rate: int = TARGET_RATE) -> Iterator[np.ndarray]:
    """Stream a WAV file as float32 mono chunks at `target_rate`, never loading it whole."""
    info = wav_info(path)
    frame_bytes = info.channels * info.bits // 8
    per_chunk = max(1, int(chunk_seconds * info.samplerate))
    resampler = Resampler(info.samplerate, target_rate)
    with open(info.path, "rb") as f:
        f.seek(info.data_offset)
        remaining = info.frames
        while remaining > 0:
            n = min(per_chunk, remaining)
            raw = f.read(n * frame_bytes)
            if not raw:
                break
            remaining -= n
            yield resampler.process(decode_pcm(raw[: len(raw) // frame_bytes * frame_bytes], info.bits,
                                               info.channels, info.is_float))
        tail = resampler.flush()
        if tail.size:
            yield tail


def read_wav(path: str | Path, target_rate: int = TARGET_RATE) -> np.ndarray:
    """The whole WAV file as float32 mono at `target_rate`."""
    info = wav_info(path)
    if info.frames == 0:
        raise AudioError(f"{path}: WAV file holds no audio")
    with open(info.path, "rb") as f:
        f.seek(info.data_offset)
        raw = f.read(info.frames * info.channels * info.bits // 8)
    x = decode_pcm(raw, info.bits, info.channels, info.is_float)
    return resample(x, info.samplerate, target_rate)


def write_wav(path: str | Path, signal: np.ndarray, samplerate: int = TARGET_RATE) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM mono WAV."""
    import wave

    pcm = np.clip(np.round(np.asarray(signal, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(samplerate)
        w.writeframes(pcm.tobytes())


class WavWriter:
    """Append float32 mono chunks to a 32-bit float WAV as they come (`ser-edge run --save-audio`):
    exactly the samples the pipeline was given, so `--source file:` on the result reproduces a live
    run's events. The header's sizes are brought up to date after every chunk, so a file cut short by
    a crash is still readable up to its last chunk."""

    def __init__(self, path: str | Path, samplerate: int = TARGET_RATE):
        self.path, self.samplerate, self.frames = Path(path), samplerate, 0
        self.f = open(self.path, "wb")
        self.f.write(self._header())

    def _header(self) -> bytes:
        import struct

        data = self.frames * 4
        fmt = struct.pack("<HHIIHH", WAVE_FORMAT_IEEE_FLOAT, 1, self.samplerate, self.samplerate * 4, 4, 32)
        return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data) + b"WAVE" + b"fmt " +
                struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data))

    def write(self, chunk: np.ndarray) -> None:
        self.f.seek(0, 2)
        self.f.write(np.asarray(chunk, "<f4").tobytes())
        self.frames += len(chunk)
        self.f.seek(0)
        self.f.write(self._header())
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# --------------------------------------------------------------------------------------------------
# Resampling: Kaiser-windowed sinc, polyphase, streaming. Ratios are reduced to up/down integers
# (44100 -> 16000 = 160/441); each output sample uses 2*W input samples around its position.


class Resampler:
    """Streaming band-limited resampler from `rate_in` to `rate_out`.

    zeros: sinc zero-crossings on each side (filter length); rolloff: cut-off as a fraction of the lower
    Nyquist frequency; beta: Kaiser window shape (8.6 gives ~80 dB stop-band attenuation).
    """

    def __init__(self, rate_in: int, rate_out: int = TARGET_RATE, zeros: int = 32, rolloff: float = 0.93,
                 beta: float = 8.6):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        g = math.gcd(self.rate_in, self.rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        self.passthrough = self.up == self.down
        if self.passthrough:
            return
        cutoff = min(1.0, self.up / self.down) * rolloff  # as a fraction of the input Nyquist frequency
        self.W = int(math.ceil(zeros / cutoff))  # half-width in input samples
        d = np.arange(-self.W + 1, self.W + 1)  # taps: input index offsets from floor(position)
        phase = np.arange(self.up)[:, None] / self.up
        t = phase - d[None, :]  # distance from output position to each input sample
        window = np.kaiser(2 * self.W + 1, beta)
        # Kaiser as a function of t in [-W, W]
        w = np.interp(t, np.linspace(-self.W, self.W, 2 * self.W + 1), window, left=0.0, right=0.0)
        self.table = (cutoff * np.sinc(cutoff * t) * w).astype(np.float32)  # (up, 2W)
        self.offsets = d
        self.reset()

    def reset(self) -> None:
        if self.passthrough:
            return
        # history holds input samples from absolute index `base`; we start with W zeros of left context
        self.buf = np.zeros(self.W, np.float32)
        self.base = -self.W
        self.n_in = 0
        self.next_out = 0

    def _produce(self, last_input: int) -> np.ndarray:
        """Output samples whose filter support lies within inputs < last_input."""
        # output m sits at input position m*down/up; it needs inputs up to floor(pos) + W
        m_max = ((last_input - self.W) * self.up - 1) // self.down  # largest m with floor(pos)+W <= last_input-1
        m = np.arange(self.next_out, m_max + 1, dtype=np.int64)
        if m.size == 0:
            return np.zeros(0, np.float32)
        pos = m * self.down
        i, p = pos // self.up, pos % self.up
        out = np.empty(m.size, np.float32)
        for s in range(0, m.size, 8192):  # bounded memory for long files
            idx = (i[s : s + 8192, None] + self.offsets[None, :]) - self.base
            out[s : s + 8192] = np.einsum("ij,ij->i", self.buf[idx], self.table[p[s : s + 8192]])
        self.next_out = int(m[-1]) + 1
        # drop history no future output needs
        keep_from = (self.next_out * self.down) // self.up - self.W + 1
        if keep_from > self.base:
            self.buf = self.buf[keep_from - self.base :]
            self.base = keep_from
        return out

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.passthrough:
            return x
        self.buf = np.concatenate((self.buf, x))
        self.n_in += x.size
        return self._produce(self.base + self.buf.size)

    def flush(self) -> np.ndarray:
        """Outputs for the end of the signal (zeros assumed after it); total length = ceil(n_in*up/down)."""
        if self.passthrough:
            return np.zeros(0, np.float32)
        total = -(-self.n_in * self.up // self.down)
        self.buf = np.concatenate((self.buf, np.zeros(self.W + 1, np.float32)))
        out = self._produce(self.base + self.buf.size)
        out = out[: max(0, total - (self.next_out - out.size))]
        self.reset()
        return out


def resample(x: np.ndarray, rate_in: int, rate_out: int = TARGET_RATE) -> np.ndarray:
    """Resample a whole signal; output length ceil(len(x) * rate_out / rate_in)."""
    r = Resampler(rate_in, rate_out)
    if r.passthrough:
        return np.asarray(x, np.float32)
    return np.concatenate((r.process(x), r.flush()))


def read_audio(path: str | Path, target_rate: int = TARGET_RATE) -> np.ndarray:
    """WAV through `read_wav`; other formats (FLAC, AIFF) only when soundfile is installed (training)."""
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF":
        return read_wav(path, target_rate)
    try:
        import soundfile  # optional: the converter has it, the device does not need it
    except ImportError:
        raise AudioError(f"{path}: is {_what_is_it(head)}, expected a WAV (RIFF/WAVE) file") from None
    try:
        x, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own error types
        raise AudioError(f"{path}: cannot decode ({e})") from None
    return resample(x.mean(axis=1), rate, target_rate)

