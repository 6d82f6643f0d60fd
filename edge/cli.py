"""ser-edge: run the emotion service, analyse recordings, list microphones, check a config.

Only argument parsing and wiring: the service is edge/service.py, the processing edge/pipeline.py, the
MQTT contract edge/mqtt.py. Exit codes: 0 fine, 1 runtime failure, 2 bad input (file, model, config,
arguments), each with one line naming the culprit and what was expected.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# before numpy loads: OpenBLAS would otherwise start a spinning thread per core for the front end's small
# matrix products, doubling the service's CPU for nothing (docs/RESULTS.md section 4); the systemd unit
# sets it too, this covers `ser-edge` started by hand or from a pip install. Set it to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from . import __version__
from .audio import DEMO_RECORDING, AudioError, iter_wav, read_wav, wav_info
from .config import load
from .model import DEFAULT_MODEL, Classifier
from .service import BAD_INPUT, RunOptions, make_pipeline, serve
from .sources import list_devices

log = logging.getLogger("ser_edge")


# --------------------------------------------------------------------------------------------------
# run


def run_overrides(args) -> dict:
    """{section: {key: value}} for the `run` flags that were given; validated like the file."""
    flags = {"source": ("audio", "source"), "speed": ("audio", "speed"), "broker": ("mqtt", "broker"),
             "device_id": ("device", "id"), "state_dir": ("state", "dir"), "model": ("model", "path"),
             "stats_interval": ("mqtt", "stats_interval_s")}
    out: dict = {}
    for flag, (section, key) in flags.items():
        value = getattr(args, flag, None)
        if value is not None and value != "":
            out.setdefault(section, {})[key] = value
    if getattr(args, "no_mqtt", False):
        out.setdefault("mqtt", {})["enabled"] = False
    return out


def cmd_run(args) -> int:
    overrides = run_overrides(args)
    cfg = load(args.config).with_changes(overrides)
    return serve(cfg, RunOptions(config_path=args.config, overrides=overrides, print_events=args.print_events,
                                 save_audio=args.save_audio, flush_timeout_s=args.flush_timeout))


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
                          f"{Path(path).name}: what ser-edge hears ({Path(clf.path).name})",
                          window_s=clf.meta.window_s, bands=clf.meta.features.nfilt)
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
                doc = {
                    "file": path,
                    "offset_s": round(w.offset_s, 3),
                    "speech": w.speech,
                    "dbfs": round(w.dbfs, 1),
                    "label": clf.labels[int(np.argmax(w.scores))] if w.scores is not None else None,
                    "scores": {lab: round(float(v), 4) for lab, v in zip(clf.labels, w.scores)}
                    if w.scores is not None
                    else None,
                }
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
        print(
            f"{d['index']:3}  {d['name']:40}  {d['channels']} ch  default {d['default_rate']} Hz  "
            f"opens at {', '.join(map(str, d['rates'])) or '?'}"
        )
    return 0


def cmd_check_config(args) -> int:
    cfg = load(args.path)
    print(f"{args.path}: OK ({sum(len(v) for v in cfg.as_dict().values())} settings)")
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
    print(
        f"demo: embedded broker on 127.0.0.1:{port}; a subscriber prints every message on ser/# and "
        f"homeassistant/#\ndemo: playing {args.file} at {args.speed}x real time through ser-edge run\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as state:
        overrides = {
            "audio": {"source": f"file:{args.file}", "speed": args.speed},
            "mqtt": {"broker": f"mqtt://127.0.0.1:{port}", "stats_interval_s": 5.0},
            "device": {"id": "demo"},
            "state": {"dir": state},
        }
        if args.model:
            overrides["model"] = {"path": args.model}
        rc = serve(load(None).with_changes(overrides), RunOptions(overrides=overrides))
    time.sleep(0.5)
    sub.loop_stop()
    sub.disconnect()
    broker.stop()
    events = sum(1 for t in received if t.endswith("/event"))
    print(
        f"\ndemo: {len(received)} messages received, {events} emotion events. "
        f"Next: `ser-edge run --source mic:default --broker mqtt://YOUR_BROKER` (see README)."
    )
    return rc


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


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
    r.add_argument(
        "--save-audio",
        metavar="OUT.wav",
        help="also write the 16 kHz audio the pipeline hears (32-bit float WAV): `--source file:OUT.wav "
        "--speed 0` then reproduces this run's events",
    )
    r.add_argument(
        "--flush-timeout",
        type=float,
        default=10.0,
        help="seconds to wait at exit for the broker to take queued messages",
    )
    r.set_defaults(fn=cmd_run)

    a = sub.add_parser("analyze", help="offline analysis of WAV files (no MQTT)")
    a.add_argument("files", nargs="+")
    a.add_argument("--model")
    a.add_argument("--config")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--clip", action="store_true", help="one result per file instead of per window")
    a.add_argument("--plot", metavar="OUT.png", help="also draw waveform, log-mel, gate and emotion timeline")
    a.set_defaults(fn=cmd_analyze)

    d = sub.add_parser("devices", help="list audio input devices")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_devices)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path")
    c.set_defaults(fn=cmd_check_config)

    m = sub.add_parser("demo", help="the whole chain on a bundled recording with an embedded broker")
    m.add_argument("--file", default=str(DEMO_RECORDING))
    m.add_argument("--speed", type=float, default=8.0)
    m.add_argument("--model")
    m.set_defaults(fn=cmd_demo)

    b = sub.add_parser("bench", help="benchmark the model and the pipeline (see docs/benchmarks.md)")
    b.add_argument("--model", nargs="*")
    b.add_argument("--threads", type=int, nargs="*", default=[1])
    b.add_argument("--seconds", type=float, default=60.0)
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench)

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
