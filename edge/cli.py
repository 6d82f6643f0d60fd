"""ser-edge: run the emotion service, analyse recordings, list microphones, check a config.

Exit codes: 0 fine, 1 runtime failure, 2 bad input (file, model, config, arguments), each with one
line naming the culprit and what was expected.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import __version__
from .audio import AudioError, WavWriter, iter_wav, read_wav, wav_info
from .config import Config, ConfigError, load
from .model import DEFAULT_MODEL, Classifier, ModelError, interpreter_version
from .pipeline import AdaptationSettings, GateSettings, Pipeline, SmoothingSettings, iso_time
from .sources import END, SourceError, list_devices, open_source

log = logging.getLogger("ser_edge")
SAMPLE = Path(__file__).parent / "samples" / "demo.wav"
BAD_INPUT = (AudioError, ConfigError, ModelError, SourceError)


# --------------------------------------------------------------------------------------------------
# systemd notification, written to $NOTIFY_SOCKET directly (no dependency)


def sd_notify(message: str) -> None:
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


# --------------------------------------------------------------------------------------------------
# helpers


def load_model(cfg: Config) -> Classifier:
    return Classifier(cfg["model"]["path"] or DEFAULT_MODEL, num_threads=cfg["model"]["num_threads"],
                      require_int8=cfg["model"]["require_int8"])


def make_pipeline(clf: Classifier, cfg: Config, wall_start: float | None = None) -> Pipeline:
    adaptation = AdaptationSettings(**{k: cfg["adaptation"][k] for k in ("enabled", "memory_s", "prior_s")})
    return Pipeline(clf, GateSettings(**cfg["gate"]), SmoothingSettings(**cfg["smoothing"]), cfg["model"]["hop_s"],
                    wall_start=wall_start, adaptation=adaptation)


def _state_dir(cfg: Config) -> Path:
    if cfg["state"]["dir"]:
        return Path(cfg["state"]["dir"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "ser-edge"


def _percentiles(values) -> tuple[float, float]:
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
# run


class Service:
    """One running instance: config, model, source, pipeline, publisher; reloadable on SIGHUP."""

    def __init__(self, args, cfg: Config):
        self.args, self.cfg = args, cfg
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.broker = None
        self.publisher = None
        self.leds = None
        self.started = time.time()
        self.cpu0 = time.process_time()
        self.events_published = 0
        save = getattr(args, "save_audio", None)
        self.audio_out = WavWriter(save) if save else None  # what the pipeline hears, to reproduce a run

    # -- setup --------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        self.clf = load_model(cfg)
        self.device_id = _device_id(cfg)
        self.source = open_source(cfg["audio"]["source"], cfg["audio"]["speed"], cfg["audio"]["chunk_ms"],
                                  cfg["audio"]["queue_chunks"], cfg["audio"]["mic_rate"], cfg["audio"]["reopen_max_s"])
        self.pipeline = make_pipeline(self.clf, cfg)
        self._load_speech_stats()
        if cfg["mqtt"]["enabled"]:
            from .mqtt import Publisher, safe_id
            from .outbox import Outbox

            url = cfg["mqtt"]["broker"] or self._default_broker()
            self.outbox = Outbox(_state_dir(cfg), cfg["state"]["queue_max"])
            name = cfg["device"]["name"] or f"Emotion {self.device_id}"
            self.publisher = Publisher(cfg, safe_id(self.device_id), name, self.clf.labels,
                                       Path(self.clf.path).name, self.outbox, url)
            self.publisher.start()
            # the current state at every start: a retained state left by a crash (say, mid-event) must
            # not stand for the quiet room this process starts in
            self.publisher.publish_state(self.pipeline.state)
        self._close_event_left_open()
        if cfg["leds"]["enabled"]:
            from .leds import Leds

            self.leds = Leds(cfg["leds"]["rgb_pins"], cfg["leds"]["emotion_pins"], cfg["leds"]["speech_pin"])
        log.info("ser-edge %s: model %s (%s, %d labels, %s), source %s, device %s", __version__,
                 self.clf.path, "int8" if self.clf.is_int8 else "float", len(self.clf.labels), self.clf.runtime,
                 cfg["audio"]["source"], self.device_id)
        self.source.start()

    # -- on-device adaptation: the learnt speech statistics survive restarts ---------------------
    def _speech_stats_path(self) -> Path:
        return _state_dir(self.cfg) / "speech-stats.json"

    def _load_speech_stats(self) -> None:
        st = self.pipeline.speech_stats
        if st is not None and self.pipeline.adapting and st.load(self._speech_stats_path()):
            log.info("speech statistics restored: %.0f s of this device's speech", st.speech_s)
        self.next_stats_save = time.monotonic() + self.cfg["adaptation"]["save_interval_s"]

    def save_speech_stats(self) -> None:
        pipeline = getattr(self, "pipeline", None)  # None when start-up failed
        st = pipeline.speech_stats if pipeline else None
        if st is None or not pipeline.adapting:
            return
        try:
            self._speech_stats_path().parent.mkdir(parents=True, exist_ok=True)
            st.save(self._speech_stats_path())
        except OSError as e:
            log.warning("cannot save speech statistics to %s (%s); they are kept in memory",
                        self._speech_stats_path(), e.strerror)

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

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        sd_notify("READY=1\nSTATUS=listening")
        interval = self.cfg["mqtt"]["stats_interval_s"]
        next_stats = time.monotonic() + min(5.0, interval)
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
                next_stats = time.monotonic() + interval
                self.publish_stats()
            try:
                chunk = self.source.queue.get(timeout=1.0)
            except queue.Empty:
                if not self.source._thread.is_alive() and self.source.queue.empty():
                    break
                continue
            if chunk is END:
                break
            if self.audio_out:
                self.audio_out.write(chunk)
            out = self.pipeline.push(chunk)
            self.handle(out)
            if time.monotonic() >= self.next_stats_save:
                self.next_stats_save = time.monotonic() + self.cfg["adaptation"]["save_interval_s"]
                self.save_speech_stats()
            if self.pipeline.dead_mic and not dead_reported:
                log.warning("microphone input has been silent/constant for %.0f s (dead microphone?)",
                            self.cfg["gate"]["dead_mic_s"])
                dead_reported = True
            elif not self.pipeline.dead_mic:
                dead_reported = False
        sd_notify("STOPPING=1")
        self.source.stop()
        self.handle(self.pipeline.finish())
        return 0

    # -- an event left open by a crash is ended at the next start ---------------------------------
    def _open_event_path(self) -> Path:
        return _state_dir(self.cfg) / "open-event.json"

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
        try:
            left = json.loads(self._open_event_path().read_text())
            self._open_event_path().unlink()
        except (OSError, ValueError):
            return
        end = {**left, "type": "end", "end_time": iso_time(time.time()), "reason": "restart"}
        log.info("end %s %s: left open by the previous run (it did not stop cleanly)", left.get("event_type"),
                 left.get("id"))
        if self.publisher:
            self.publisher.publish_event(end)

    def handle(self, out) -> None:
        for e in out.events:
            payload = e.payload()
            self._remember_open_event(payload)
            if e.type != "update":
                log.info("%s %s %s score %.2f at %.1f s", e.type, e.emotion, e.id, e.score, e.offset_s)
            if self.publisher:
                self.publisher.publish_event(payload)
            self.events_published += 1
            if self.args.print_events:
                print(json.dumps({"topic": "event", **payload}), flush=True)
        if out.state_changed:
            if self.publisher:
                self.publisher.publish_state(self.pipeline.state)
            if self.leds:
                self.leds.show(self.pipeline.state["emotion"], self.pipeline.state["speech"])

    def stats(self) -> dict:
        p = self.pipeline
        up = time.time() - self.started
        cpu = time.process_time() - self.cpu0
        inf = _percentiles(p.inference_ms)
        feat = _percentiles(p.feature_ms)
        audio_s = max(p.offset_s, 1e-9)
        return {"uptime_s": round(up, 1), "audio_s": round(p.offset_s, 1),
                "inference_ms_p50": inf[0], "inference_ms_p95": inf[1],
                "feature_ms_p50": feat[0], "feature_ms_p95": feat[1],
                "rtf": round(cpu / audio_s, 4), "cpu_pct": round(100 * cpu / max(up, 1e-9), 1),
                "rss_mb": rss_mb(), "windows": p.windows_run, "gated": p.windows_gated,
                "dropped_chunks": self.source.dropped_chunks, "overflows": self.source.overflows,
                "source_outages": self.source.outages, "source_restarts": self.source.restarts,
                "source_gap_s": round(self.source.gap_now(), 1), "source_lost": self.source.lost_since is not None,
                "dead_mic": p.dead_mic,
                "adapted_speech_s": round(p.speech_stats.speech_s, 1) if p.speech_stats is not None else 0.0,
                "queued": self.publisher.pending if self.publisher else 0,
                "dropped_messages": self.outbox.dropped if self.publisher else 0,
                "queue_errors": self.outbox.write_errors if self.publisher else 0,
                "version": __version__, "runtime": interpreter_version(),
                "model_sha256": self.clf.file.sha256[:16], **pi_health()}

    def publish_stats(self) -> None:
        s = self.stats()
        if self.publisher:
            self.publisher.publish_stats(s)
        log.debug("stats %s", json.dumps(s))

    def reload(self) -> None:
        """SIGHUP: re-read config and model; a bad one is refused and the old one keeps running."""
        path = self.cfg.source if self.cfg.source and self.cfg.source != "<config>" else None
        try:
            cfg = load(path) if path else self.cfg
            _apply_overrides(cfg, self.args)
            clf = load_model(cfg)
            pipeline = make_pipeline(clf, cfg, wall_start=self.pipeline.tracker.wall_start)
        except BAD_INPUT as e:
            log.error("reload refused, keeping the running config and model: %s", e)
            return
        self.handle(self.pipeline.finish())
        self.save_speech_stats()
        pipeline.samples = self.pipeline.samples
        if pipeline.speech_stats is not None and self.pipeline.speech_stats is not None:
            pipeline.speech_stats.load_dict(self.pipeline.speech_stats.to_dict())  # same prior: carried over
        self.cfg, self.clf, self.pipeline = cfg, clf, pipeline
        log.info("reloaded config %s and model %s", path or "(defaults)", clf.path)

    def shutdown(self, flush_s: float = 10.0) -> None:
        self.save_speech_stats()
        if self.audio_out:
            self.audio_out.close()
        if self.publisher:
            self.publish_stats()
            delivered = self.publisher.flush(flush_s)
            self.publisher.stop(timeout=1.0)
            if not delivered:
                log.warning("%d message(s) not yet delivered; kept in the queue for the next start",
                            self.publisher.pending)
            self.outbox.close()
        if self.leds:
            self.leds.close()
        if self.broker:
            self.broker.stop()


def _device_id(cfg: Config) -> str:
    return cfg["device"]["id"] or socket.gethostname().split(".")[0]


def _apply_overrides(cfg: Config, args) -> None:
    if getattr(args, "source", None):
        cfg["audio"]["source"] = args.source
    if getattr(args, "speed", None) is not None:
        cfg["audio"]["speed"] = args.speed
    if getattr(args, "broker", None):
        cfg["mqtt"]["broker"] = args.broker
    if getattr(args, "no_mqtt", False):
        cfg["mqtt"]["enabled"] = False
    if getattr(args, "device_id", None):
        cfg["device"]["id"] = args.device_id
    if getattr(args, "state_dir", None):
        cfg["state"]["dir"] = args.state_dir
    if getattr(args, "model", None):
        cfg["model"]["path"] = args.model
    if getattr(args, "stats_interval", None):
        cfg["mqtt"]["stats_interval_s"] = args.stats_interval
    from .config import validate

    # flags go through the same validation as the file
    validate({s: dict(v) for s, v in cfg.items()}, "command line")


def cmd_run(args) -> int:
    cfg = load(args.config)
    _apply_overrides(cfg, args)
    logging.getLogger().setLevel(getattr(logging, cfg["logging"]["level"].upper()))
    svc = Service(args, cfg)
    signal.signal(signal.SIGTERM, lambda *_: svc.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: svc.stop_requested.set())
    signal.signal(signal.SIGHUP, lambda *_: svc.reload_requested.set())
    try:
        svc.start()
        return svc.run()
    finally:
        svc.shutdown(flush_s=args.flush_timeout)


# --------------------------------------------------------------------------------------------------
# analyze


def _clip_blocks(path: str, duration_s: float, window_s: float):
    """The file's audio in 1 s blocks. A clip shorter than one window is centred in a window of faint
    noise (-60 dB below its peak, like a quiet room around an utterance), so it is analysed once, the
    way the model was trained on short utterances, instead of being followed by digital silence."""
    if duration_s >= window_s:
        yield from iter_wav(path, chunk_seconds=1.0)
        return
    x = read_wav(path)
    total = int(round(window_s * 16000)) + 160  # one window, plus a frame for rounding
    floor = (float(np.max(np.abs(x))) if len(x) else 0.0) * 1e-3 + 1e-6
    noise = np.random.default_rng(0).standard_normal(max(0, total - len(x))).astype(np.float32) * floor
    before = len(noise) // 2
    yield np.concatenate([noise[:before], x.astype(np.float32), noise[before:]])


def cmd_analyze(args) -> int:
    clf = Classifier(args.model or DEFAULT_MODEL, num_threads=args.threads)
    cfg = load(args.config)
    status = 0
    for path in args.files:
        try:
            info = wav_info(path)
            pipe = make_pipeline(clf, cfg, wall_start=0.0)
            rows, probs, events, kept = [], [], [], []
            for block in _clip_blocks(path, info.duration, clf.meta.window_s):
                out = pipe.push(block)
                events += out.events
                if args.plot:
                    kept.append(block)
                for w in out.windows:
                    rows.append(w)
                    if w.scores is not None:
                        probs.append(w.scores)
            events += pipe.finish().events
            # a clip shorter than the window: pad with silence so it is analysed once
            if not rows:
                pad = np.zeros(int(clf.meta.window_s * 16000), np.float32)
                for w in pipe.push(pad).windows[:1]:
                    rows.append(w)
                    if w.scores is not None:
                        probs.append(w.scores)
        except AudioError as e:
            print(f"ser-edge: {e}", file=sys.stderr)
            status = 2
            continue
        if args.plot:
            from .plot import plot_analysis

            out_png = args.plot if len(args.files) == 1 else f"{Path(args.plot).with_suffix('')}-{Path(path).stem}.png"
            plot_analysis(out_png, np.concatenate(kept) if kept else np.zeros(1), rows, events, clf.labels,
                          f"{Path(path).name}: what ser-edge hears ({Path(clf.path).name})")
            print(f"ser-edge: wrote {out_png}", file=sys.stderr)
        if args.clip:
            if probs:
                mean = np.mean(probs, axis=0)
                doc = {"file": path, "label": clf.labels[int(np.argmax(mean))],
                       "scores": {lab: round(float(v), 4) for lab, v in zip(clf.labels, mean)}, "windows": len(probs)}
            else:
                doc = {"file": path, "label": None, "scores": {}, "windows": 0}
            print(json.dumps(doc))
        else:
            for w in rows:
                doc = {"file": path, "offset_s": round(w.offset_s, 3), "speech": w.speech, "dbfs": round(w.dbfs, 1),
                       "label": clf.labels[int(np.argmax(w.scores))] if w.scores is not None else None,
                       "scores": {lab: round(float(v), 4) for lab, v in zip(clf.labels, w.scores)} if w.scores is not None else None}
                print(json.dumps(doc))
    return status


# --------------------------------------------------------------------------------------------------
# devices, check-config, demo


def cmd_devices(args) -> int:
    devices = list_devices()
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    if not devices:
        print("no input devices found (is the microphone plugged in? is this user in the 'audio' group?)")
    for d in devices:
        print(f"{d['index']:3}  {d['name']:40}  {d['channels']} ch  default {d['default_rate']} Hz  "
              f"opens at {', '.join(map(str, d['rates'])) or '?'}")
    return 0


def cmd_check_config(args) -> int:
    cfg = load(args.path)
    print(f"{args.path}: OK ({sum(len(v) for v in cfg.values())} settings)")
    return 0


def cmd_demo(args) -> int:
    """The whole chain on the bundled recording: embedded broker, service, and a subscriber printing
    what arrives, as Home Assistant would see it."""
    import tempfile

    import paho.mqtt.client as mqtt

    from .broker import EmbeddedBroker, port_free

    port = 18830
    while not port_free("127.0.0.1", port):
        port += 1
    broker = EmbeddedBroker("127.0.0.1", port).start()
    received = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-subscriber")

    def on_message(c, u, msg):
        received.append(msg.topic)
        body = msg.payload.decode(errors="replace")
        if msg.topic.endswith("/config"):
            body = f"<Home Assistant discovery, {len(msg.payload)} bytes>"
        print(f"  {msg.topic:42} {body}", flush=True)

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe([("ser/#", 1), ("homeassistant/#", 1)])
    sub.loop_start()
    time.sleep(0.3)
    print(f"demo: embedded broker on 127.0.0.1:{port}; a subscriber prints every message on ser/# and "
          f"homeassistant/#\ndemo: playing {args.file} at {args.speed}x real time through ser-edge run\n", flush=True)
    with tempfile.TemporaryDirectory() as state:
        ns = argparse.Namespace(config=None, source=f"file:{args.file}", speed=args.speed,
                                broker=f"mqtt://127.0.0.1:{port}", no_mqtt=False, device_id="demo",
                                state_dir=state, model=args.model, print_events=False, flush_timeout=10.0,
                                stats_interval=5.0)
        rc = cmd_run(ns)
    time.sleep(0.5)
    sub.loop_stop()
    sub.disconnect()
    broker.stop()
    events = sum(1 for t in received if t.endswith("/event"))
    print(f"\ndemo: {len(received)} messages received, {events} emotion events. "
          f"Next: `ser-edge run --source mic:default --broker mqtt://YOUR_BROKER` (see README).")
    return rc


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    p = argparse.ArgumentParser(prog="ser-edge", description="Speech emotion recognition on the edge.")
    p.add_argument("--version", action="version", version=f"ser-edge {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the service: audio -> emotion events -> MQTT")
    r.add_argument("--config", help="TOML config (see firmware_config/ser-edge.toml)")
    r.add_argument("--source", help="file:PATH | mic:NAME | cmd:COMMAND | stdin")
    r.add_argument("--speed", type=float, help="file pacing: 1 = real time, 0 = as fast as possible")
    r.add_argument("--broker", help="mqtt://[user@]host:port or mqtts://...")
    r.add_argument("--no-mqtt", action="store_true", help="do not publish (events still logged)")
    r.add_argument("--device-id")
    r.add_argument("--state-dir")
    r.add_argument("--model")
    r.add_argument("--stats-interval", type=float)
    r.add_argument("--print-events", action="store_true", help="also print each event as JSON on stdout")
    r.add_argument("--save-audio", metavar="OUT.wav",
                   help="also write the 16 kHz audio the pipeline hears (32-bit float WAV): `--source file:OUT.wav "
                        "--speed 0` then reproduces this run's events")
    r.add_argument("--flush-timeout", type=float, default=10.0,
                   help="seconds to wait at exit for the broker to take queued messages")
    r.set_defaults(fn=cmd_run)

    a = sub.add_parser("analyze", help="offline analysis of WAV files (no MQTT)")
    a.add_argument("files", nargs="+")
    a.add_argument("--model")
    a.add_argument("--config")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--clip", action="store_true", help="one result per file instead of per window")
    a.add_argument("--json", action="store_true", help="JSON lines (the default output format)")
    a.add_argument("--plot", metavar="OUT.png", help="also draw waveform, log-mel, gate and emotion timeline")
    a.set_defaults(fn=cmd_analyze)

    d = sub.add_parser("devices", help="list audio input devices")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_devices)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path")
    c.set_defaults(fn=cmd_check_config)

    m = sub.add_parser("demo", help="the whole chain on a bundled recording with an embedded broker")
    m.add_argument("--file", default=str(SAMPLE))
    m.add_argument("--speed", type=float, default=8.0)
    m.add_argument("--model")
    m.set_defaults(fn=cmd_demo)

    b = sub.add_parser("bench", help="benchmark the model and the pipeline (see docs/benchmarks.md)")
    b.add_argument("--model", nargs="*")
    b.add_argument("--threads", type=int, nargs="*", default=[1])
    b.add_argument("--seconds", type=float, default=60.0)
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=lambda a: __import__("edge.bench", fromlist=["main"]).main(a))

    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except BAD_INPUT as e:
        print(f"ser-edge: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
