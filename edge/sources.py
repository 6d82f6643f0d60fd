"""Live audio sources. Each captures on its own thread into a bounded queue of 16 kHz float32 chunks;
the processing loop never blocks capture, and chunks that do not fit are dropped and counted.

  file:PATH     a WAV file, paced at `speed` x real time (0 = as fast as possible)
  cmd:COMMAND   raw S16_LE mono 16 kHz from a command (arecord, parecord), restarted with backoff
  stdin         raw S16_LE mono 16 kHz on standard input
  mic:NAME      a PyAudio input device by name substring or index ("default" = the system default)
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from .audio import TARGET_RATE, Resampler, iter_wav, wav_info

log = logging.getLogger("ser_edge")
END = None  # put on the queue when a finite source is exhausted


class SourceError(ValueError):
    """A source that cannot be opened; the message says what exists instead."""


class Source:
    """Base: a capture thread filling `self.queue`; counters for stats."""

    name = "source"
    what = "audio source"  # in log lines
    finite = False
    reopen_max_s = 30.0

    def __init__(self, chunk_ms: int = 100, queue_chunks: int = 100):
        self.chunk_samples = TARGET_RATE * chunk_ms // 1000
        self.queue: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self.dropped_chunks = 0
        self.overflows = 0
        self.restarts = 0  # successful re-opens after a loss
        self.outages = 0  # times the device (or command) was lost
        self.gap_s = 0.0  # seconds without audio while it was lost (finished outages)
        self.lost_since: float | None = None  # monotonic time of the current outage's start
        self._overflow_logged = -1e9  # when an overflow was last logged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_safe, name=f"capture-{self.name}", daemon=True)

    def _lost(self, why: str) -> None:
        """Note a loss. Logged once per outage, not once per reopen attempt."""
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            self.outages += 1
            log.warning("%s lost (%s); reopening with backoff up to %.0f s", self.what, why, self.reopen_max_s)

    def _back(self) -> None:
        if self.lost_since is not None:
            gap = time.monotonic() - self.lost_since
            self.gap_s += gap
            self.restarts += 1
            self.lost_since = None
            log.info("%s back after %.1f s", self.what, gap)

    def _overflow(self, why: str) -> None:
        """Count an input overflow; log the first one and then at most one a minute."""
        self.overflows += 1
        now = time.monotonic()
        if now - self._overflow_logged > 60:
            self._overflow_logged = now
            log.warning("input overflow (%s); %d so far", why, self.overflows)

    def gap_now(self) -> float:
        """Seconds without audio so far, including an outage still going on."""
        return self.gap_s + (time.monotonic() - self.lost_since if self.lost_since is not None else 0.0)

    @property
    def finished(self) -> bool:
        """The capture has ended and every chunk it made has been taken."""
        return not self._thread.is_alive() and self.queue.empty()

    def start(self) -> Source:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _emit(self, chunk: np.ndarray, block: bool = False) -> None:
        try:
            self.queue.put(chunk, block=block, timeout=None if block else 0)
        except queue.Full:
            self.dropped_chunks += 1

    def _run_safe(self) -> None:
        try:
            self.run()
        except Exception as e:  # never a silent dead thread: log it and end the stream
            log.error("%s source failed: %s", self.name, e)
        finally:
            if self.finite or self._stop.is_set():
                self._emit(END, block=True)

    def run(self) -> None:
        raise NotImplementedError


class FileSource(Source):
    name = "file"
    finite = True

    def __init__(self, path: str, speed: float = 1.0, **kw):
        self.path = path
        wav_info(path)  # refuse a bad file now, with a clear message, not in the thread
        self.speed = speed
        super().__init__(**kw)

    def run(self) -> None:
        t0 = time.monotonic()
        sent = 0
        for block in iter_wav(self.path, chunk_seconds=self.chunk_samples / TARGET_RATE):
            if self._stop.is_set():
                return
            if self.speed > 0:
                due = t0 + sent / TARGET_RATE / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # a file is not a live device: wait for room instead of dropping
            self._emit(block, block=True)
            sent += block.size


def _s16_to_float(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


class CommandSource(Source):
    """Raw S16_LE mono 16 kHz from a command; if it exits, it is restarted with exponential backoff."""

    name = "cmd"
    what = "capture command"

    def __init__(self, command: str, reopen_max_s: float = 30.0, rate: int = TARGET_RATE, **kw):
        self.argv = shlex.split(command)
        if not self.argv:
            raise SourceError("cmd: source needs a command, e.g. cmd:arecord -r 16000 -c 1 -f S16_LE -t raw")
        if not shutil.which(self.argv[0]):
            raise SourceError(f"cmd:{command}: {self.argv[0]!r} not found on PATH")
        self.reopen_max_s = reopen_max_s
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        super().__init__(**kw)

    def stop(self) -> None:
        super().stop()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            except OSError as e:
                self._lost(f"cannot start {self.argv[0]}: {e.strerror}")
                self.proc = None
            if self.proc:
                resampler = Resampler(self.rate, TARGET_RATE)
                nbytes = self.chunk_samples * 2 * self.rate // TARGET_RATE
                while not self._stop.is_set():
                    raw = self.proc.stdout.read(nbytes)
                    if not raw:
                        break
                    self._back()
                    self._emit(resampler.process(_s16_to_float(raw)))
                self.proc.wait()
                if self._stop.is_set():
                    return
                err = (self.proc.stderr.read(300) or b"").decode(errors="replace").strip().splitlines()
                self._lost(f"exit code {self.proc.returncode}" + (f": {err[-1]}" if err else ""))
            if time.monotonic() - started > 30:
                backoff = 0.5  # it ran for a while: start the backoff afresh
            log.debug("%s: reopening in %.1f s", self.what, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.reopen_max_s)


class StdinSource(Source):
    name = "stdin"
    finite = True

    def run(self) -> None:
        stream = sys.stdin.buffer
        while not self._stop.is_set():
            raw = stream.read(self.chunk_samples * 2)
            if not raw:
                return
            self._emit(_s16_to_float(raw), block=True)


@contextlib.contextmanager
def quiet_stderr():
    """PortAudio's ALSA probing prints dozens of lines to the C-level stderr; hide them."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def list_devices() -> list[dict]:
    """Input devices PyAudio sees: index, name, channels, default rate, and which rates open."""
    try:
        import pyaudio
    except ImportError:
        raise SourceError("the mic source needs PyAudio: pip install 'ser-edge[audio]' "
                          "(and apt install portaudio19-dev)") from None
    with quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        out = []
        for i in range(pa.get_device_count()):
            d = pa.get_device_info_by_index(i)
            if d.get("maxInputChannels", 0) < 1:
                continue
            rates = []
            for r in (16000, 44100, 48000):
                try:
                    if pa.is_format_supported(r, input_device=i, input_channels=1, input_format=pyaudio.paInt16):
                        rates.append(r)
                except ValueError:
                    pass
            out.append({"index": i, "name": d["name"], "channels": int(d["maxInputChannels"]),
                        "default_rate": int(d["defaultSampleRate"]), "rates": rates})
        return out
    finally:
        pa.terminate()


def find_device(spec: str) -> dict | None:
    """A device by index or name substring; None for the system default."""
    if spec in ("", "default"):
        return None
    devices = list_devices()
    for d in devices:
        if spec.isdigit() and d["index"] == int(spec):
            return d
    matches = [d for d in devices if spec.lower() in d["name"].lower()]
    if matches:
        return matches[0]
    names = ", ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"
    raise SourceError(f"no input device matches {spec!r}; available: {names}")


PA_INPUT_OVERFLOWED = -9981  # PortAudio's paInputOverflowed


class BehindClock:
    """Audio received vs time passed since the stream opened. A sound server (PulseAudio, PipeWire)
    buffers ~20 s for a stalled reader and then drops audio silently; the only trace is that the stream
    stays behind the wall clock. While a backlog drains, "behind" shrinks read by read (late audio, not
    lost); when it has been steady for a second at more than `limit_s` above its usual level, that audio
    is gone: one overflow. Slow drift between sound card and system clock (~100 ppm) needs hours to
    reach the limit."""

    def __init__(self, rate: int, limit_s: float = 1.0, steady_s: float = 1.0):
        self.rate, self.limit_s, self.steady_s = rate, limit_s, steady_s
        self.t0 = time.monotonic()
        self.frames = 0
        self.baseline: float | None = None
        self.recent: list[tuple[float, float]] = []  # (time, behind) over the last steady_s

    def fell_behind(self, frames: int) -> bool:
        self.frames += frames
        now = time.monotonic()
        behind = now - self.t0 - self.frames / self.rate
        if self.baseline is None or behind < self.baseline:
            self.baseline = behind
        self.recent = [(t, b) for t, b in self.recent if now - t <= self.steady_s] + [(now, behind)]
        steady = now - self.recent[0][0] >= 0.9 * self.steady_s and \
            max(b for _, b in self.recent) - min(b for _, b in self.recent) < 0.1
        if steady and behind - self.baseline > self.limit_s:
            self.baseline = behind
            return True
        return False


class MicSource(Source):
    """A PyAudio input. Opened at 16 kHz if the device supports it, else at its own rate and resampled;
    stereo is down-mixed. Overflows are counted, not fatal. A lost device is reopened with backoff."""

    name = "mic"
    what = "microphone"

    def __init__(self, spec: str = "default", rate: int = 0, reopen_max_s: float = 30.0, **kw):
        self.device = find_device(spec)
        self.spec = spec
        self.rate_wanted = rate
        self.reopen_max_s = reopen_max_s
        self.opened_rate = 0
        super().__init__(**kw)

    def _open(self, pa):
        import pyaudio

        info = self.device or pa.get_default_input_device_info()
        index = info["index"]
        channels = min(2, int(info.get("maxInputChannels", info.get("channels", 1))) or 1)
        default_rate = int(info.get("defaultSampleRate", info.get("default_rate", 48000)))
        rates = [self.rate_wanted] if self.rate_wanted else [TARGET_RATE, default_rate, 48000, 44100]
        for rate in rates:
            try:
                frames = rate * self.chunk_samples // TARGET_RATE
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=frames,
                )
                return stream, rate, channels, frames
            except (OSError, ValueError):
                continue
        raise OSError(f"device {info.get('name')!r} opens at none of {rates}")

    def run(self) -> None:
        import pyaudio

        backoff = 0.5
        while not self._stop.is_set():
            with quiet_stderr():  # PortAudio's ALSA probing is noisy, more so while a device is gone
                pa = pyaudio.PyAudio()
            stream = None
            try:
                with quiet_stderr():
                    stream, rate, channels, frames = self._open(pa)
                if rate != self.opened_rate:
                    log.info(
                        "microphone open at %d Hz, %d channel(s)%s",
                        rate,
                        channels,
                        "" if rate == TARGET_RATE else ", resampled to 16 kHz",
                    )
                self.opened_rate = rate
                resampler = Resampler(rate, TARGET_RATE)
                clock = BehindClock(rate)
                while not self._stop.is_set():
                    try:
                        raw = stream.read(frames, exception_on_overflow=True)
                    except OSError as e:
                        if e.errno != PA_INPUT_OVERFLOWED:
                            raise
                        self._overflow("the ALSA buffer overran")  # PortAudio's flag: that read is gone
                        continue
                    self._back()  # audio flows again (no-op unless we were lost)
                    backoff = 0.5
                    if clock.fell_behind(frames):
                        self._overflow(
                            "audio fell behind the clock: the sound server dropped what we were too slow to take"
                        )
                    x = _s16_to_float(raw)
                    if channels > 1:
                        x = x.reshape(-1, channels).mean(axis=1)
                    self._emit(resampler.process(x))
            except OSError as e:
                if self._stop.is_set():
                    break
                self._lost(str(e))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.reopen_max_s)
            finally:
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
                with quiet_stderr():
                    pa.terminate()


def open_source(
    spec: str,
    speed: float = 1.0,
    chunk_ms: int = 100,
    queue_chunks: int = 100,
    mic_rate: int = 0,
    reopen_max_s: float = 30.0,
) -> Source:
    kw = {"chunk_ms": chunk_ms, "queue_chunks": queue_chunks}
    if spec.startswith("file:"):
        return FileSource(spec[5:], speed=speed, **kw)
    if spec.startswith("cmd:"):
        return CommandSource(spec[4:], reopen_max_s=reopen_max_s, **kw)
    if spec == "stdin":
        return StdinSource(**kw)
    if spec.startswith("mic:"):
        return MicSource(spec[4:], rate=mic_rate, reopen_max_s=reopen_max_s, **kw)
    raise SourceError(f"source {spec!r}: expected file:PATH, cmd:COMMAND, mic:NAME or stdin")
