"""The running service: source -> pipeline -> events -> MQTT, LEDs; stats, reload and clean shutdown.

`ser-edge run` builds a `Service` from a validated `Config` and `RunOptions` and calls `start`, `run`
and `shutdown`; the CLI only parses arguments. Where a window becomes an event: edge/pipeline.py.
Where an event becomes a message: edge/mqtt.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .adapt import VoiceGroupStats
from .audio import AudioError, WavWriter
from .config import Config, ConfigError, defaults, load
from .model import DEFAULT_MODEL, Classifier, ModelError, interpreter_version
from .pipeline import Output, Pipeline
from .sources import END, SourceError, open_source
from .voicegroups import GROUPS

log = logging.getLogger("ser_edge")
BAD_INPUT = (AudioError, ConfigError, ModelError, SourceError)

# what a SIGHUP can change while running; the rest needs a restart (it names the connection or the files)
LIVE_SECTIONS = ("audio", "model", "gate", "smoothing", "adaptation", "leds", "logging")
LIVE_KEYS = ("mqtt.stats_interval_s",)


@dataclass(frozen=True)
class RunOptions:
    """How this run was started, beside the config."""

    config_path: str | None = None  # re-read on SIGHUP
    overrides: dict = field(default_factory=dict)  # {section: {key: value}} from the command line, kept on reload
    print_events: bool = False  # each event also as a JSON line on stdout
    save_audio: str | None = None  # also write what the pipeline hears to this WAV
    flush_timeout_s: float = 10.0  # at exit, how long to wait for the broker to take queued messages


# --------------------------------------------------------------------------------------------------
# helpers


def sd_notify(message: str) -> None:
    """systemd notification, written to $NOTIFY_SOCKET directly (no dependency)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)  # a notification must never stall the processing loop
            s.sendto(message.encode(), addr)
    except OSError:
        pass


def load_model(cfg: Config) -> Classifier:
    return Classifier(cfg.model.path or DEFAULT_MODEL, num_threads=cfg.model.num_threads,
                      require_int8=cfg.model.require_int8)


def make_pipeline(clf: Classifier, cfg: Config, wall_start: float | None = None) -> Pipeline:
    return Pipeline(clf, cfg.gate, cfg.smoothing, cfg.model.hop_s, wall_start=wall_start, adaptation=cfg.adaptation)


def state_dir(cfg: Config) -> Path:
    if cfg.state.dir:
        return Path(cfg.state.dir)
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "ser-edge"


def device_id(cfg: Config) -> str:
    return cfg.device.id or socket.gethostname().split(".")[0]


def percentiles(values) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    p50, p95 = np.percentile(np.fromiter(values, float), [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def pi_health() -> dict:
    """CPU temperature and throttling flags where the Pi exposes them."""
    out = {}
    try:
        out["temp_c"] = round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000, 1)
    except (OSError, ValueError):
        pass
    try:  # the firmware's throttled bits, exposed by the kernel on recent Pi OS
        out["throttled"] = Path("/sys/devices/platform/soc/soc:firmware/get_throttled").read_text().strip()
    except OSError:
        pass
    return out


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------------------------------


class Service:
    """One running instance: config, model, source, pipeline, publisher; reloadable on SIGHUP."""

    def __init__(self, cfg: Config, options: RunOptions = RunOptions(), source=None, publisher=None):
        """`source` and `publisher` replace the ones the config would open (tests pass fakes)."""
        self.cfg, self.options = cfg, options
        self.given_source, self.given_publisher = source, publisher
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.broker = None
        self.publisher = None
        self.outbox = None
        self.leds = None
        self.pipeline: Pipeline | None = None
        self.started = time.time()
        self.cpu0 = time.process_time()
        # what the pipeline hears, to reproduce a run
        self.audio_out = WavWriter(options.save_audio) if options.save_audio else None

    # -- setup --------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        self.clf = load_model(cfg)
        self.device_id = device_id(cfg)
        self.source = self.given_source or self._open_source(cfg)
        self.pipeline = make_pipeline(self.clf, cfg)
        p = self.pipeline
        if cfg.adaptation.voice_groups and p.adapting and p.voice_groups is None:
            if cfg.adaptation.voice_groups_file:  # asked for by name: refuse; the shipped one missing: warn
                raise ConfigError(f"{cfg.source or 'config'}: [adaptation] voice_groups_file: expected a voice-group "
                                  f"file for this model (ser-convert voice-groups): {p.voice_groups_off}")
            log.warning("voice groups off, one set of speech statistics: %s", p.voice_groups_off)
        self._load_speech_stats()
        self.publisher = self.given_publisher
        if cfg.mqtt.enabled and not self.publisher:
            from .mqtt import Publisher, safe_id
            from .outbox import Outbox

            url = cfg.mqtt.broker or self._default_broker()
            self.outbox = Outbox(state_dir(cfg), cfg.state.queue_max)
            name = cfg.device.name or f"Emotion {self.device_id}"
            self.publisher = Publisher(cfg, safe_id(self.device_id), name, self.clf.labels,
                                       Path(self.clf.path).name, self.outbox, url)
            self.publisher.start()
        if self.publisher:
            from .mqtt import state_payload

            # the current state at every start: a retained state left by a crash (say, mid-event) must
            # not stand for the quiet room this process starts in
            self.publisher.publish_state(state_payload(self.pipeline.state))
        self._close_event_left_open()
        self.leds = self._open_leds(cfg)
        log.info("ser-edge %s: model %s (%s, %d labels, %s), source %s, device %s", __version__,
                 self.clf.path, "int8" if self.clf.is_int8 else "float", len(self.clf.labels), self.clf.runtime,
                 cfg.audio.source, self.device_id)
        self.source.start()

    @staticmethod
    def _open_source(cfg: Config):
        a = cfg.audio
        return open_source(a.source, a.speed, a.chunk_ms, a.queue_chunks, a.mic_rate, a.reopen_max_s)

    @staticmethod
    def _open_leds(cfg: Config):
        if not cfg.leds.enabled:
            return None
        from .leds import Leds

        return Leds(cfg.leds.rgb_pins, cfg.leds.emotion_pins, cfg.leds.speech_pin)

    def _default_broker(self) -> str:
        """No broker configured: an embedded one on 127.0.0.1:1883 if amqtt is installed and the port is
        free; otherwise a local broker on the standard port."""
        from .broker import EmbeddedBroker, port_free

        if port_free("127.0.0.1", 1883):
            try:
                self.broker = EmbeddedBroker("127.0.0.1", 1883).start()
                log.info("no broker configured: started an embedded broker on 127.0.0.1:1883")
            except (ImportError, RuntimeError) as e:
                log.warning("no broker configured and no embedded broker (%s); using mqtt://localhost:1883", e)
        return "mqtt://127.0.0.1:1883"

    # -- on-device adaptation: the learnt speech statistics survive restarts ---------------------
    def _speech_stats_path(self) -> Path:
        return state_dir(self.cfg) / "speech-stats.json"

    def _load_speech_stats(self) -> None:
        st = self.pipeline.speech_stats
        if st is not None and self.pipeline.adapting and st.load(self._speech_stats_path()):
            log.info("speech statistics restored: %.0f s of this device's speech", st.speech_s)
        self.next_stats_save = time.monotonic() + self.cfg.adaptation.save_interval_s

    def save_speech_stats(self) -> None:
        st = self.pipeline.speech_stats if self.pipeline else None  # no pipeline when start-up failed
        if st is None or not self.pipeline.adapting:
            return
        try:
            self._speech_stats_path().parent.mkdir(parents=True, exist_ok=True)
            st.save(self._speech_stats_path())
        except OSError as e:
            log.warning("cannot save speech statistics to %s (%s); they are kept in memory",
                        self._speech_stats_path(), e.strerror)

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        sd_notify("READY=1\nSTATUS=listening")
        next_stats = time.monotonic() + min(5.0, self.cfg.mqtt.stats_interval_s)
        dead_reported = False
        next_ping = 0.0
        while not self.stop_requested.is_set():
            if time.monotonic() >= next_ping:  # from the processing loop: a stuck loop stops the pings
                sd_notify("WATCHDOG=1")
                next_ping = time.monotonic() + 1.0
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if time.monotonic() >= next_stats:  # also while no audio arrives (a lost microphone)
                next_stats = time.monotonic() + self.cfg.mqtt.stats_interval_s
                self.publish_stats()
            try:
                chunk = self.source.queue.get(timeout=1.0)
            except queue.Empty:
                if self.source.finished:
                    break
                continue
            if chunk is END:
                break
            if self.audio_out:
                self.audio_out.write(chunk)
            self.handle(self.pipeline.push(chunk))
            if time.monotonic() >= self.next_stats_save:
                self.next_stats_save = time.monotonic() + self.cfg.adaptation.save_interval_s
                self.save_speech_stats()
            if self.pipeline.dead_mic and not dead_reported:
                log.warning("microphone input has been silent/constant for %.0f s (dead microphone?)",
                            self.cfg.gate.dead_mic_s)
                dead_reported = True
            elif not self.pipeline.dead_mic:
                dead_reported = False
        sd_notify("STOPPING=1")
        self.source.stop()
        self.handle(self.pipeline.finish())
        return 0

    # -- an event left open by a crash is ended at the next start ---------------------------------
    def _open_event_path(self) -> Path:
        return state_dir(self.cfg) / "open-event.json"

    def _remember_open_event(self, payload: dict) -> None:
        try:
            if payload["type"] == "start":
                self._open_event_path().parent.mkdir(parents=True, exist_ok=True)
                self._open_event_path().write_text(json.dumps(payload))
            elif payload["type"] == "end":
                self._open_event_path().unlink(missing_ok=True)
        except OSError:
            pass  # a read-only state directory: the event simply cannot be closed after a crash

    def _close_event_left_open(self) -> None:
        from .mqtt import restart_end_payload

        try:
            left = json.loads(self._open_event_path().read_text())
            self._open_event_path().unlink()
        except (OSError, ValueError):
            return
        log.info("end %s %s: left open by the previous run (it did not stop cleanly)", left.get("event_type"),
                 left.get("id"))
        if self.publisher:
            self.publisher.publish_event(restart_end_payload(left, time.time()))

    def handle(self, out: Output) -> None:
        from .mqtt import event_payload, state_payload

        for e in out.events:
            payload = event_payload(e)
            self._remember_open_event(payload)
            if e.type != "update":
                log.info("%s %s %s score %.2f at %.1f s", e.type, e.emotion, e.id, e.score, e.offset_s)
            if self.publisher:
                self.publisher.publish_event(payload)
            if self.options.print_events:
                print(json.dumps({"topic": "event", **payload}), flush=True)
        if out.state_changed:
            if self.publisher:
                self.publisher.publish_state(state_payload(self.pipeline.state))
            if self.leds:
                self.leds.show(self.pipeline.state.emotion, self.pipeline.state.speech)

    # -- stats --------------------------------------------------------------------------------
    def health(self):
        from .mqtt import Health

        p, src = self.pipeline, self.source
        return Health(uptime_s=time.time() - self.started, audio_s=p.offset_s, cpu_s=time.process_time() - self.cpu0,
                      inference_ms=percentiles(p.inference_ms), feature_ms=percentiles(p.feature_ms),
                      rss_mb=rss_mb(), windows=p.windows_run, gated=p.windows_gated, gated_why=dict(p.gated),
                      dropped_chunks=src.dropped_chunks, overflows=src.overflows, source_outages=src.outages,
                      source_restarts=src.restarts, source_gap_s=src.gap_now(), source_lost=src.lost_since is not None,
                      dead_mic=p.dead_mic,
                      adapted_speech_s=p.speech_stats.speech_s if p.speech_stats is not None else 0.0,
                      adapted_speech_s_by_group=(dict(zip(GROUPS, p.speech_stats.speech_s_by_group))
                                                 if isinstance(p.speech_stats, VoiceGroupStats) else None),
                      queued=self.publisher.pending if self.publisher else 0,
                      dropped_messages=self.outbox.dropped if self.outbox is not None else 0,
                      queue_errors=self.outbox.write_errors if self.outbox is not None else 0,
                      runtime=interpreter_version(), model_sha256=self.clf.file.sha256, board=pi_health())

    def publish_stats(self) -> None:
        from .mqtt import stats_payload

        s = stats_payload(self.health())
        if self.publisher:
            self.publisher.publish_stats(s)
        log.debug("stats %s", json.dumps(s))

    # -- SIGHUP --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config and the model and rebuild what changed. A bad config or model is refused and
        the running one goes on; keys that cannot change live (device, MQTT connection, state directory)
        keep their running values, named in one line."""
        path = self.options.config_path
        try:
            new = load(path) if path else defaults()
            if self.options.overrides:
                new = new.with_changes(self.options.overrides)
            clf = load_model(new)
        except BAD_INPUT as e:
            log.error("reload refused, keeping the running config and model: %s", e)
            return
        changed = self.cfg.changed_keys(new)
        fixed = [k for k in changed if k.split(".")[0] not in LIVE_SECTIONS and k not in LIVE_KEYS]
        if fixed:
            log.warning("reload: %s cannot change while running; kept the running values (restart to apply)",
                        ", ".join(fixed))
            kept = {k.split(".")[0] for k in fixed}
            new = dataclasses.replace(new, **{s: getattr(self.cfg, s) for s in kept if s != "mqtt"})
            if "mqtt" in kept:
                new = dataclasses.replace(new, mqtt=dataclasses.replace(
                    self.cfg.mqtt, stats_interval_s=new.mqtt.stats_interval_s))
        self.handle(self.pipeline.finish())  # an event in progress ends with the old settings
        self.save_speech_stats()
        pipeline = make_pipeline(clf, new)
        pipeline.resume_from(self.pipeline)
        if any(k.startswith("audio.") for k in changed):
            self.source.stop()
            self.source = self._open_source(new).start()
        if any(k.startswith("leds.") for k in changed):
            if self.leds:
                self.leds.close()
            self.leds = self._open_leds(new)
        logging.getLogger().setLevel(new.logging.level.upper())
        self.cfg, self.clf, self.pipeline = new, clf, pipeline
        log.info("reloaded config %s and model %s%s", path or "(defaults)", clf.path,
                 f" (changed: {', '.join(k for k in changed if k not in fixed)})" if changed else "")

    def shutdown(self) -> None:
        self.save_speech_stats()
        if self.audio_out:
            self.audio_out.close()
        if self.publisher:
            self.publish_stats()
            delivered = self.publisher.flush(self.options.flush_timeout_s)
            self.publisher.stop(timeout=1.0)
            if not delivered:
                log.warning("%d message(s) not yet delivered; kept in the queue for the next start",
                            self.publisher.pending)
            if self.outbox is not None:
                self.outbox.close()
        if self.leds:
            self.leds.close()
        if self.broker:
            self.broker.stop()


def serve(cfg: Config, options: RunOptions = RunOptions()) -> int:
    """Run a service until its source ends or SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
    import signal

    logging.getLogger().setLevel(cfg.logging.level.upper())
    svc = Service(cfg, options)
    signal.signal(signal.SIGTERM, lambda *_: svc.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: svc.stop_requested.set())
    signal.signal(signal.SIGHUP, lambda *_: svc.reload_requested.set())
    try:
        svc.start()
        return svc.run()
    finally:
        svc.shutdown()
