"""Fleet: N devices on one mosquitto, with the real Publisher and Outbox and the fleet ACL.

    .venv/bin/python bench/fleet.py                       # N = 10, 100, 500
    .venv/bin/python bench/fleet.py --devices 50 --json

Each simulated device is what `ser-edge run` is on the network side: a `Publisher` (paho, QoS 1, the
device's own user name and password, discovery, availability, will) draining a SQLite `Outbox` in its
own state directory. What the devices publish is replayed from one real analysis of the demo recording
(made once with the model at start-up; the devices themselves run no model): its states and events,
at their real offsets, every device starting at a random moment of the first `--seconds`.

A consumer logged in as `homeassistant` (what Home Assistant or a care back end is) subscribes to
every device's state and events. Printed per N: every event delivered (by device and id), end-to-end
latency from the device's enqueue to the consumer (p50 / p95), messages per second, broker CPU seconds
and resident memory per device, and the ACL proof: a device that publishes under another device's
topic gets "not authorized" (MQTT 5 PUBACK) and nothing reaches the consumer; a wrong password is
refused at connect. The broker runs with firmware_config/mosquitto-fleet.acl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from edge.broker import Mosquitto  # noqa: E402
from edge.config import defaults  # noqa: E402
from edge.mqtt import Publisher, Topics  # noqa: E402
from edge.outbox import Outbox  # noqa: E402

ACL = ROOT / "firmware_config" / "mosquitto-fleet.acl"


def recorded_analysis() -> list[tuple[float, str, dict]]:
    """(offset_s, "state" | "event", payload) of one real run over the demo recording."""
    from edge.audio import read_wav
    from edge.model import DEFAULT_MODEL, Classifier
    from edge.mqtt import event_payload, state_payload
    from edge.pipeline import Pipeline

    pipe = Pipeline(Classifier(DEFAULT_MODEL), wall_start=0.0)
    x = read_wav(ROOT / "edge" / "samples" / "demo.wav")
    out = []
    for i in range(0, len(x), 1600):
        o = pipe.push(x[i : i + 1600])
        t = (i + 1600) / 16000
        out += [(t, "event", event_payload(e)) for e in o.events]
        if o.state_changed:
            out.append((t, "state", state_payload(pipe.state)))
    out += [(len(x) / 16000, "event", event_payload(e)) for e in pipe.finish().events]
    return out


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_broker(tmp: Path, users: dict[str, str]) -> Mosquitto:
    """mosquitto with a password per device and the per-device ACL this project ships."""
    passwd = tmp / "fleet.passwd"
    passwd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)  # plain -> hashed, in place
    return Mosquitto(tmp, extra_conf=f"password_file {passwd}\nacl_file {ACL}\nmax_queued_messages 100000\n",
                     anonymous=False).start()


class Consumer:
    """The back end: every device's events and states, with the time each arrived."""

    def __init__(self, port: int, password: str):
        self.received: dict[tuple, float] = {}
        self.messages = 0
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-consumer", clean_session=True)
        self.c.username_pw_set("homeassistant", password)
        self.c.on_message = self._on_message
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([("ser/+/event", 1), ("ser/+/state", 1)])
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the consumer could not subscribe")

    def _on_message(self, client, userdata, msg):
        now = time.monotonic()
        with self.lock:
            self.messages += 1
            if msg.topic.endswith("/event"):
                e = json.loads(msg.payload)
                self.received.setdefault((msg.topic.split("/")[1], e["id"], e["type"], e["offset_s"]), now)

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


def acl_check(port: int, users: dict[str, str], consumer: Consumer) -> dict:
    """Device 0 publishes under device 1's topic (MQTT 5: the PUBACK says why), and connects with a
    wrong password."""
    a, b = list(u for u in users if u.startswith("dev"))[:2]
    result = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-intruder", protocol=mqtt.MQTTv5)
    c.username_pw_set(a, users[a])
    c.on_publish = lambda cl, u, mid, rc, p: (result.__setitem__("puback", str(rc)), done.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    forged = {"event_type": "angry", "type": "start", "id": "forged-by-" + a, "score": 1.0, "offset_s": 0.0}
    c.publish(Topics("ser", b).event, json.dumps(forged), qos=1)
    done.wait(5)
    time.sleep(1.0)
    c.loop_stop()
    c.disconnect()
    result["forged_event_reached_consumer"] = any(k[1] == forged["id"] for k in consumer.received)
    refused = threading.Event()
    w = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-wrong-password", protocol=mqtt.MQTTv5)
    w.username_pw_set(a, "not-the-password")
    w.on_connect = lambda cl, u, f, rc, p: (result.__setitem__("wrong_password_connack", str(rc)), refused.set())
    w.connect("127.0.0.1", port)
    w.loop_start()
    refused.wait(5)
    w.loop_stop()
    result["refused"] = result.get("puback") == "Not authorized" and not result["forged_event_reached_consumer"] \
        and result.get("wrong_password_connack") in ("Not authorized", "Bad user name or password")
    return result


def device_worker(ids, users, port, analysis, seconds, seed, tmp, ready, go, stop, results):
    """One process simulating `ids` (a real fleet is many machines; one Python process with hundreds
    of paho and drain threads would starve its own keepalives)."""
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    publishers = {}
    for d in ids:
        cfg = defaults().with_changes({"mqtt": dict(username=d, password_file=str(tmp / f"{d}.pw"),
                                                    allow_plaintext_password=True)})
        (tmp / f"{d}.pw").write_text(users[d])
        publishers[d] = Publisher(cfg, d, f"Emotion {d}", labels, "default.tflite", Outbox(tmp / d),
                                  f"mqtt://127.0.0.1:{port}")
        publishers[d].start()
    connected = all(p.connected.wait(120) for p in publishers.values())
    ready.put(connected)
    rng = np.random.default_rng(seed)
    timeline = []
    for d in ids:
        start = rng.uniform(0, seconds)
        for t, kind, payload in analysis:
            if kind == "event":
                payload = dict(payload, id=f"{d}-{payload['id']}")
            timeline.append((start + t, d, kind, payload))
    timeline.sort(key=lambda r: r[0])
    go.wait()
    t0 = time.monotonic()
    sent = {}
    for when, d, kind, payload in timeline:
        delay = t0 + when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if kind == "event":
            sent[(d, payload["id"], payload["type"], payload["offset_s"])] = time.monotonic()  # system-wide clock
            publishers[d].publish_event(payload)
        else:
            publishers[d].publish_state(payload)
    results.put(sent)
    stop.wait()
    for p in publishers.values():
        p.stop(timeout=2.0)


def run_fleet(n: int, analysis, seconds: float, tmp: Path, seed: int = 0, per_process: int = 100) -> dict:
    import multiprocessing as mp

    ids = [f"dev{i:04d}" for i in range(n)]
    users = {i: f"pw-{i}-{seed}" for i in ids} | {"homeassistant": "ha-secret"}
    broker = start_broker(tmp, users)
    cpu0, rss0 = proc_cpu_s(broker.proc.pid), proc_rss_mb(broker.proc.pid)
    consumer = Consumer(broker.port, users["homeassistant"])
    ctx = mp.get_context("fork")
    ready, results, go, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    groups = [ids[i : i + per_process] for i in range(0, n, per_process)]
    t_connect = time.monotonic()
    workers = [ctx.Process(target=device_worker, args=(g, users, broker.port, analysis, seconds, seed + k, tmp,
                                                       ready, go, stop, results)) for k, g in enumerate(groups)]
    for w in workers:
        w.start()
    connected = all(ready.get(timeout=180) for _ in workers)
    connect_s = time.monotonic() - t_connect
    rss_connected = proc_rss_mb(broker.proc.pid)
    cpu1 = proc_cpu_s(broker.proc.pid)
    t0 = time.monotonic()
    go.set()
    sent = {}
    for _ in workers:
        sent.update(results.get(timeout=seconds + 120))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(sent) <= set(consumer.received):
        time.sleep(0.2)
    run_s = time.monotonic() - t0
    cpu2 = proc_cpu_s(broker.proc.pid)
    acl = acl_check(broker.port, users, consumer)
    stop.set()
    for w in workers:
        w.join(30)
    consumer.stop()
    broker.stop()

    lat = np.array([consumer.received[k] - t for k, t in sent.items() if k in consumer.received]) * 1000
    delivered = sum(k in consumer.received for k in sent)
    return {"devices": n, "processes": len(workers), "connected": connected, "connect_s": round(connect_s, 1),
            "events_sent": len(sent), "events_delivered": delivered, "all_delivered": delivered == len(sent),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "messages_received": consumer.messages, "messages_per_s": round(consumer.messages / run_s, 1),
            "run_s": round(run_s, 1),
            "broker_cpu_s_connect": round(cpu1 - cpu0, 2), "broker_cpu_s_replay": round(cpu2 - cpu1, 2),
            "broker_cpu_ms_per_device_minute": round((cpu2 - cpu1) * 1000 / n / (run_s / 60), 2),
            "broker_rss_mb": round(rss_connected, 1),
            "broker_rss_kb_per_device": round((rss_connected - rss0) * 1024 / n, 1),
            "acl": acl}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", default=[10, 100, 500])
    p.add_argument("--seconds", type=float, default=25.0, help="devices start within this many seconds")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not shutil.which("mosquitto_passwd"):
        sys.exit("fleet: mosquitto_passwd not found (apt-get install mosquitto)")
    analysis = recorded_analysis()
    n_events = sum(k == "event" for _, k, _ in analysis)
    print(f"replaying one analysis of the demo recording per device: {n_events} events, "
          f"{len(analysis) - n_events} states", file=sys.stderr)
    rows = []
    for n in a.devices:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_fleet(n, analysis, a.seconds, Path(tmp))
        rows.append(r)
        if a.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"N={n:4d}: events {r['events_delivered']}/{r['events_sent']} delivered, latency p50 "
                  f"{r['latency_ms_p50']} ms p95 {r['latency_ms_p95']} ms, {r['messages_per_s']} msg/s, broker "
                  f"{r['broker_cpu_ms_per_device_minute']} CPU-ms per device-minute, RSS {r['broker_rss_mb']} MB "
                  f"({r['broker_rss_kb_per_device']} KB per device), connect {r['connect_s']} s; ACL: forged "
                  f"publish {r['acl'].get('puback')}, reached consumer {r['acl']['forged_event_reached_consumer']}, "
                  f"wrong password {r['acl'].get('wrong_password_connack')}", flush=True)
    ok = all(r["all_delivered"] and r["connected"] and r["acl"]["refused"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
