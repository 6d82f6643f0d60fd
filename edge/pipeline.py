"""Sound in, emotion events out: streaming features, sliding windows, gate, inference, smoothing.

`Pipeline.push(chunk)` takes 16 kHz float32 audio of any length and returns what happened: window
results, state changes and `start` / `update` / `end` events. It does no I/O, so it is tested directly
with real recordings and reused by `ser-edge run`, `analyze` and `bench`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from .adapt import RoomFloor, SpeechStats, VoiceGroupStats, speech_frames
from .affect import arousal_valence
from .config import AdaptationSettings, GateSettings, SmoothingSettings
from .features import MfccStream
from .model import Classifier
from .voicegroups import DEFAULT_GROUPS, for_model, group_features, pitch_percentiles, voice_shape
from .voicing import VoiceFrames, default_check, mel_stats, window_features

AV_STEP = 0.1  # a state message when arousal or valence moved this much since the last one


@dataclass
class WindowResult:
    offset_s: float  # seconds of audio since the source started, at the window's end
    speech: bool
    dbfs: float
    scores: np.ndarray | None  # raw model probabilities (None when gated out)
    smoothed: np.ndarray | None
    inference_ms: float = 0.0
    gated: str | None = None  # why not speech: quiet (level or dynamics), not_voice, dead_mic; None = speech
    voice: float | None = None  # P(voice) when the voice check ran
    voice_features: np.ndarray | None = None  # its nine numbers (edge/voicing.py NAMES)


@dataclass
class Event:
    type: str  # start | update | end
    id: str
    emotion: str
    score: float  # smoothed score of `emotion`
    top_score: float  # highest smoothed score seen during the event
    start_time: float  # wall clock, seconds since the epoch
    end_time: float | None
    offset_s: float


@dataclass(frozen=True)
class State:
    """What the device hears now (mqtt.state_payload turns it into the retained state message)."""
    emotion: str = "none"  # the emotion of the ongoing event, or none
    confidence: float = 0.0
    speech: bool = False
    arousal: float | None = None  # -1..1, None when nobody spoke for end_after_s
    valence: float | None = None
    scores: dict = field(default_factory=dict)  # smoothed score per label of the last speech window
    offset_s: float = 0.0
    time: float = 0.0  # wall clock, seconds since the epoch


@dataclass
class Output:
    windows: list[WindowResult] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    state_changed: bool = False


class Gate:
    """Speech or not, for one window: loud enough, and varying like speech rather than steady noise."""

    def __init__(self, s: GateSettings):
        self.s = s

    def is_speech(self, frame_db: np.ndarray, window_dbfs: float) -> bool:
        if window_dbfs < self.s.min_dbfs:
            return False
        lo, hi = np.percentile(frame_db, [10, 95])
        if hi - lo < self.s.min_dynamic_db:
            return False  # steady: hum, fan, constant noise
        active = np.mean(frame_db > lo + self.s.min_dynamic_db / 2)
        return bool(active >= self.s.min_active_fraction)


class Smoother:
    """Average of recent speech windows' probabilities (EMA or sliding mean)."""

    def __init__(self, s: SmoothingSettings, n: int):
        self.s, self.n = s, n
        self.reset()

    def reset(self):
        self.value: np.ndarray | None = None
        self.recent: deque = deque(maxlen=self.s.windows)

    def update(self, p: np.ndarray) -> np.ndarray:
        if self.s.method == "mean":
            self.recent.append(p)
            self.value = np.mean(self.recent, axis=0)
        else:
            self.value = p if self.value is None else self.s.alpha * p + (1 - self.s.alpha) * self.value
        return self.value


class EventTracker:
    """Turns smoothed scores into a stable current emotion with start / update / end events.

    An emotion starts after it has led with at least `threshold` for `min_duration_s`; another emotion
    replaces it only when it leads by `hysteresis` for as long; an event ends when its score stays below
    threshold - hysteresis for `min_duration_s`, after `end_after_s` without speech, or at the end of
    the source.
    """

    def __init__(self, labels: list[str], s: SmoothingSettings, wall_start: float):
        self.labels, self.s, self.wall_start = labels, s, wall_start
        self.current: Event | None = None
        self.candidate: tuple[int, float] | None = None  # (label index, offset it started leading)
        self.weak_since: float | None = None
        self.last_speech: float | None = None
        self.last_update: float = 0.0

    def _wall(self, offset: float) -> float:
        return self.wall_start + offset

    def _start(self, i: int, score: float, offset: float) -> Event:
        self.current = Event("start", uuid.uuid4().hex[:16], self.labels[i], score, score,
                             self._wall(offset), None, offset)
        self.last_update = offset
        self.weak_since = None
        return self.current

    def _end(self, offset: float, score: float | None = None) -> Event:
        c = self.current
        assert c is not None
        self.current = None
        return Event("end", c.id, c.emotion, c.score if score is None else score, c.top_score, c.start_time,
                     self._wall(offset), offset)

    def step(self, smoothed: np.ndarray | None, offset: float) -> list[Event]:
        out: list[Event] = []
        if smoothed is None:  # a window without speech
            if self.current and self.last_speech is not None and offset - self.last_speech >= self.s.end_after_s:
                out.append(self._end(offset))
            self.candidate = None
            return out
        self.last_speech = offset
        top = int(np.argmax(smoothed))
        top_score = float(smoothed[top])
        if self.current is None:
            if top_score >= self.s.threshold:
                if self.candidate is None or self.candidate[0] != top:
                    self.candidate = (top, offset)
                if offset - self.candidate[1] >= self.s.min_duration_s - 1e-9:
                    out.append(self._start(top, top_score, offset))
                    self.candidate = None
            else:
                self.candidate = None
            return out
        cur = self.labels.index(self.current.emotion)
        cur_score = float(smoothed[cur])
        self.current.score = cur_score
        self.current.top_score = max(self.current.top_score, cur_score)
        # a different emotion clearly ahead for long enough: switch
        if top != cur and top_score >= self.s.threshold and top_score - cur_score >= self.s.hysteresis:
            if self.candidate is None or self.candidate[0] != top:
                self.candidate = (top, offset)
            if offset - self.candidate[1] >= self.s.min_duration_s - 1e-9:
                out.append(self._end(offset, cur_score))
                out.append(self._start(top, top_score, offset))
                self.candidate = None
                return out
        else:
            self.candidate = None
        # the current emotion fading: end
        if cur_score < self.s.threshold - self.s.hysteresis:
            self.weak_since = offset if self.weak_since is None else self.weak_since
            if offset - self.weak_since >= self.s.min_duration_s - 1e-9:
                out.append(self._end(offset, cur_score))
                return out
        else:
            self.weak_since = None
        if offset - self.last_update >= self.s.update_interval_s:
            self.last_update = offset
            c = self.current
            out.append(Event("update", c.id, c.emotion, c.score, c.top_score, c.start_time, None, offset))
        return out

    def finish(self, offset: float) -> list[Event]:
        return [self._end(offset)] if self.current else []


def decide(smoother: Smoother, tracker: EventTracker, scores: np.ndarray | None, offset: float):
    """One window's class scores (None when the gate held it back) -> (smoothed scores, events).

    Where a window becomes an event; tools/stream_tune.py replays captured scores through it."""
    smoothed = smoother.update(scores) if scores is not None else None
    events = tracker.step(smoothed, offset)
    if scores is None and tracker.current is None:
        smoother.reset()  # a new stretch of speech starts from scratch
    return smoothed, events


class Pipeline:
    """The processing chain for one audio stream."""

    def __init__(self, classifier: Classifier, gate: GateSettings = GateSettings(),
                 smoothing: SmoothingSettings = SmoothingSettings(), hop_s: float = 0.0,
                 wall_start: float | None = None, adaptation: AdaptationSettings = AdaptationSettings()):
        self.clf = classifier
        meta = classifier.meta
        # a model trained on "device" normalisation learns this device's speech statistics as it listens;
        # with adaptation disabled it keeps the training prior
        self.speech_stats: SpeechStats | VoiceGroupStats | None = None
        self.adapting = False
        # several voices through one device: a set of statistics per voice group (edge/voicegroups.py)
        self.voice_groups, self.voice_groups_off = None, "[adaptation] voice_groups = false"
        if meta.normalisation == "device":
            self.adapting = adaptation.enabled
            if self.adapting and adaptation.voice_groups:
                path = adaptation.voice_groups_file or DEFAULT_GROUPS
                self.voice_groups, self.voice_groups_off = for_model(meta, path)
            stats = VoiceGroupStats if self.voice_groups else SpeechStats
            self.speech_stats = stats(meta.mean, meta.scale, adaptation.prior_s, adaptation.memory_s)
        self.room_floor = RoomFloor()
        self.cfg = meta.features
        self.stream = MfccStream(self.cfg)
        self.window_frames = meta.frames
        hop = hop_s or meta.hop_s
        self.hop_frames = max(1, int(round(hop / self.cfg.winstep)))
        self.frames: deque = deque(maxlen=self.window_frames)  # the last window of feature frames
        self.window_samples = int(round(meta.window_s * self.cfg.samplerate))
        self._audio = np.zeros(0, np.float32)  # recent audio from absolute sample _audio_base, for the gate
        self._audio_base = 0
        self._audio_parts: list[np.ndarray] = []
        self.since_hop = 0
        self.gate = Gate(gate)
        self.gate_settings = gate
        # the voice check: after the energy gate, is it a voice? (`measure_voice` computes it without deciding)
        self.voice_check = default_check(meta.features) if gate.voice_check else None
        self.voice_threshold = (gate.voice_threshold or self.voice_check.threshold) if self.voice_check else None
        self.voice_frames = VoiceFrames()
        self.measure_voice = False
        self.smoother = Smoother(smoothing, len(meta.labels))
        self.tracker = EventTracker(meta.labels, smoothing, time.time() if wall_start is None else wall_start)
        self.samples = 0  # fed to this pipeline
        self.start_sample = 0  # where this pipeline started in the stream (after a reload, not 0)
        self.av_published: tuple | None = None
        self.av_heard: tuple = (None, 0.0)  # (arousal, valence) of the last speech window, and when
        self.state = State(time=self.tracker.wall_start)
        self.dead_samples = 0
        self.feature_ms: deque = deque(maxlen=600)
        self.inference_ms: deque = deque(maxlen=600)
        self.feature_ms_total = 0.0  # cumulative, for benchmarks
        self.inference_ms_total = 0.0
        self.voice_ms_total = 0.0
        self.windows_run = 0
        self.windows_gated = 0
        self.gated = {"quiet": 0, "not_voice": 0, "dead_mic": 0}  # why windows were not speech

    @property
    def offset_s(self) -> float:
        """Seconds of audio since the stream started."""
        return (self.start_sample + self.samples) / self.cfg.samplerate

    @property
    def wall_start(self) -> float:
        return self.tracker.wall_start

    def resume_from(self, old: Pipeline) -> None:
        """Take over a stream from `old` (a reload): offsets and wall times go on where it stopped, the
        counters keep counting, and learnt speech statistics carry over when both models share a prior
        (load_dict checks)."""
        self.start_sample = old.start_sample + old.samples
        self.tracker.wall_start = old.tracker.wall_start
        self.state = replace(self.state, offset_s=self.offset_s, time=self.wall_start + self.offset_s)
        self.windows_run, self.windows_gated, self.gated = old.windows_run, old.windows_gated, dict(old.gated)
        self.feature_ms_total, self.inference_ms_total = old.feature_ms_total, old.inference_ms_total
        if self.speech_stats is not None and old.speech_stats is not None:
            self.speech_stats.load_dict(old.speech_stats.to_dict())

    def push(self, chunk: np.ndarray) -> Output:
        """Feed audio; returns the windows evaluated and the events that resulted.

        Feature frames are computed only when a window is due (once per hop), so small chunks cost
        almost nothing until then; the results do not depend on the chunking.
        """
        out = Output()
        chunk = np.asarray(chunk, np.float32).ravel()
        if chunk.size == 0:
            return out
        self._check_dead(chunk)
        self._audio_parts.append(chunk)
        self.stream.feed(chunk)
        self.samples += chunk.size
        fl, step = self.cfg.frame_len, self.cfg.frame_step
        available = 0 if self.samples < fl else 1 + (self.samples - fl) // step
        pending = available - self.stream.frames_emitted
        if len(self.frames) + pending < self.window_frames or self.since_hop + pending < self.hop_frames:
            return out  # no window due yet
        t0 = time.perf_counter()
        frames_before = self.stream.frames_emitted
        feats = self.stream.compute()
        ms = (time.perf_counter() - t0) * 1000
        self.feature_ms.append(ms)
        self.feature_ms_total += ms
        for k, row in enumerate(feats):
            self.frames.append(row)
            self.since_hop += 1
            if len(self.frames) == self.window_frames and self.since_hop >= self.hop_frames:
                self.since_hop = 0
                # the window ends at the end of this frame, in audio time
                end_sample = (frames_before + k) * step + fl
                self._window(end_sample, out)
        return out

    def _window_audio(self, end_sample: int) -> np.ndarray:
        """The audio of the window ending at `end_sample` (absolute), for the gate's levels."""
        if self._audio_parts:
            self._audio = np.concatenate([self._audio, *self._audio_parts])
            self._audio_parts = []
        start = end_sample - self.window_samples
        if start > self._audio_base:  # drop what no later window needs
            self._audio = self._audio[start - self._audio_base :]
            self._audio_base = start
        return self._audio[max(0, start - self._audio_base) : end_sample - self._audio_base]

    def _levels(self, a: np.ndarray) -> tuple[np.ndarray, float]:
        """10 ms block levels (dBFS) over a window of audio, and the window's RMS in dBFS."""
        a = a.astype(np.float64)
        blocks = a[: a.size // 160 * 160].reshape(-1, 160)
        block_db = 10 * np.log10(np.mean(np.square(blocks), axis=1) + 1e-12) + 3.0103
        window_db = 10 * math.log10(float(np.mean(np.square(a))) + 1e-12) + 3.0103
        return block_db, window_db

    def _window(self, end_sample: int, out: Output) -> None:
        offset = (self.start_sample + end_sample) / self.cfg.samplerate
        audio = self._window_audio(end_sample)
        block_db, window_db = self._levels(audio)
        gated = "dead_mic" if self.dead_mic else None if self.gate.is_speech(block_db, window_db) else "quiet"
        voice = features = rows = None
        if gated is None and (self.voice_check or self.measure_voice):
            t0 = time.perf_counter()
            rows = self.voice_frames.rows(audio, end_sample)
            features = window_features(rows)
            if self.voice_check:
                mel = mel_stats(np.stack(self.frames)) if self.voice_check.mel_bands else None
                voice = self.voice_check.probability(features, mel)
                if voice < self.voice_threshold:
                    gated = "not_voice"
            self.voice_ms_total += (time.perf_counter() - t0) * 1000
        speech = gated is None
        scores = None
        inf_ms = 0.0
        window = np.stack(self.frames) if (speech or self.adapting) else None
        if self.adapting:  # the room's floor, from every window: speech frames must stand out of it
            self.floor_now = self.room_floor.update(window)
        if speech:
            t0 = time.perf_counter()
            mask = speech_frames(window, floor=self.floor_now) if self.adapting else None
            if self.voice_groups:  # whose statistics: the window's voice group (None: too little speech, keep)
                rows = self.voice_frames.rows(audio, end_sample) if rows is None else rows
                self.speech_stats.use(self.voice_groups.group(group_features(voice_shape(window, mask),
                                                                             pitch_percentiles(rows))))
            scores = self.clf.predict(window, self.speech_stats)
            inf_ms = (time.perf_counter() - t0) * 1000
            if self.adapting:  # learn from the newest hop's speech frames, after scoring them
                new = window[-self.hop_frames :]
                self.speech_stats.add(new[mask[-self.hop_frames :]])
            self.inference_ms.append(inf_ms)
            self.inference_ms_total += inf_ms
            self.windows_run += 1
        else:
            self.windows_gated += 1
            self.gated[gated] += 1
        smoothed, events = decide(self.smoother, self.tracker, scores, offset)
        out.windows.append(WindowResult(offset, speech, window_db, scores, smoothed, inf_ms, gated, voice, features))
        out.events.extend(events)
        self._update_state(speech, smoothed, offset, out)

    def _update_state(self, speech: bool, smoothed, offset: float, out: Output) -> None:
        emotion = self.tracker.current.emotion if self.tracker.current else "none"
        changed = speech != self.state.speech or emotion != self.state.emotion
        labels = self.clf.labels
        if emotion == "none":
            conf = 0.0
        elif smoothed is not None:
            conf = float(smoothed[labels.index(emotion)])
        else:  # a pause inside an event: the event goes on, with the confidence it had at its last speech
            conf = float(self.tracker.current.score)
        # arousal and valence of the smoothed scores; held through a pause shorter than end_after_s (like
        # an event), so "raised voices for five minutes" survives breaths; none after that
        if smoothed is not None:
            self.av_heard = (arousal_valence(smoothed, labels), offset)
        av = self.av_heard[0] if offset - self.av_heard[1] < self.tracker.s.end_after_s else None
        last = self.av_published
        if (av is None) != (last is None) or (av and max(abs(av[0] - last[0]), abs(av[1] - last[1])) >= AV_STEP):
            changed = True  # a dashboard follows mood without a message for every window
        self.state = State(
            emotion,
            conf,
            speech,
            av[0] if av else None,
            av[1] if av else None,
            {lab: float(v) for lab, v in zip(labels, smoothed)} if smoothed is not None else {},
            offset,
            self.tracker.wall_start + offset,
        )
        if changed:
            out.state_changed = True
            self.av_published = av

    def finish(self) -> Output:
        """End of the source: close any open event."""
        out = Output()
        out.events.extend(self.tracker.finish(self.offset_s))
        if out.events:
            self.state = replace(self.state, emotion="none", confidence=0.0, speech=False, arousal=None, valence=None)
            out.state_changed = True
        return out

    def _check_dead(self, chunk: np.ndarray) -> None:
        if np.ptp(chunk) < 1e-7:
            self.dead_samples += chunk.size
        else:
            self.dead_samples = 0

    @property
    def dead_mic(self) -> bool:
        return self.dead_samples >= self.gate_settings.dead_mic_s * self.cfg.samplerate
