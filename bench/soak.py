"""Soak: many hours of audio through `ser-edge run` as fast as it goes, against a live mosquitto.

    .venv/bin/python bench/soak.py --hours 24            # ~8 min at ~200x real time on two x86 cores

The demo recording (speech with pauses) is streamed over and over into `--source stdin`; a subscriber
counts what arrives. Every few seconds the service's RSS, threads and open file descriptors are read
from /proc. Pass criteria (issue 8): RSS growth < 5 MB after warm-up (the first 10 % of the audio), no
growth in threads or descriptors, every produced event delivered, queue empty at the end. Prints one
JSON document; exit code 1 if a criterion fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.audio import read_wav  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(tmp: Path, port: int) -> subprocess.Popen:
    import getpass

    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {getpass.getuser()}\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("soak: mosquitto did not start")


def proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = {ln.split(":")[0]: ln.split(":")[1].strip() for ln in status.splitlines() if ":" in ln}
    return {"rss_mb": int(field["VmRSS"].split()[0]) / 1024, "threads": int(field["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def feed(stdin, pcm: bytes, total_bytes: int) -> None:
    """Write the recording over and over until `total_bytes` of audio went in, then close."""
    sent = 0
    try:
        while sent < total_bytes:
            chunk = pcm[: total_bytes - sent]
            stdin.write(chunk)
            sent += len(chunk)
    except BrokenPipeError:
        pass
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between /proc samples")
    ap.add_argument("--json-out", help="also write the result here")
    args = ap.parse_args(argv)

    import paho.mqtt.client as mqtt

    tmp = Path(tempfile.mkdtemp(prefix="ser-soak-"))
    port = free_port()
    broker = start_mosquitto(tmp, port)
    arrived: list[tuple[str, str]] = []
    last_stats: dict = {}

    def on_message(c, u, m):
        nonlocal last_stats
        if m.topic.endswith("/event"):
            e = json.loads(m.payload)
            arrived.append((e["id"], e["type"]))
        elif m.topic.endswith("/stats"):
            last_stats = json.loads(m.payload)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-sub")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("ser/soak/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()

    pcm = (np.clip(read_wav(ROOT / "edge" / "samples" / "demo.wav"), -1, 1) * 32767).astype("<i2").tobytes()
    total_bytes = int(args.hours * 3600 * 16000) * 2
    svc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--source", "stdin", "--broker",
                            f"mqtt://127.0.0.1:{port}", "--device-id", "soak", "--state-dir", str(tmp / "state"),
                            "--stats-interval", "1", "--print-events", "--flush-timeout", "30"],
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    t0 = time.monotonic()
    feeder = threading.Thread(target=feed, args=(svc.stdin, pcm, total_bytes), daemon=True)
    feeder.start()
    produced: list[tuple[str, str]] = []

    def read_stdout():
        for line in svc.stdout:
            if line.startswith(b"{"):
                e = json.loads(line)
                produced.append((e["id"], e["type"]))

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    stderr_tail: list[bytes] = []
    threading.Thread(target=lambda: [stderr_tail.append(line) or stderr_tail.__delitem__(slice(0, -20))
                                     for line in svc.stderr], daemon=True).start()

    samples = []
    while svc.poll() is None:
        try:
            s = proc_sample(svc.pid)
        except (FileNotFoundError, ProcessLookupError, KeyError):
            break
        s["t"] = time.monotonic() - t0
        s["audio_s"] = last_stats.get("audio_s", 0.0)
        samples.append(s)
        time.sleep(args.sample_s)
    svc.wait()
    reader.join(10)
    wall = time.monotonic() - t0
    time.sleep(2)
    sub.loop_stop()
    sub.disconnect()
    broker.terminate()

    queue_rows = None  # what is left in the durable queue after the service exited
    db = tmp / "state" / "outbox.sqlite"
    if db.exists():
        import sqlite3

        with sqlite3.connect(str(db)) as con:
            queue_rows = con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    audio_s = total_bytes / 2 / 16000
    warm = [s for s in samples if s["audio_s"] >= 0.1 * audio_s]  # after warm-up (by the service's own stats)
    arrived_set = set(arrived)
    result = {
        "hours_of_audio": args.hours, "wall_s": round(wall, 1), "speed_x_realtime": round(audio_s / wall, 1),
        "exit_code": svc.returncode,
        "rss_mb_after_warmup": round(warm[0]["rss_mb"], 1) if warm else None,
        "rss_mb_end": round(samples[-1]["rss_mb"], 1) if samples else None,
        "rss_growth_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 2) if warm else None,
        "rss_mb_max": round(max(s["rss_mb"] for s in samples), 1) if samples else None,
        "threads_start_end": [warm[0]["threads"], warm[-1]["threads"]] if warm else None,
        "fds_start_end": [warm[0]["fds"], warm[-1]["fds"]] if warm else None,
        "events_produced": len(produced), "events_delivered": len({p for p in produced if p in arrived_set}),
        "duplicates": len(arrived) - len(arrived_set),
        "queue_rows_at_exit": queue_rows, "dropped_chunks": last_stats.get("dropped_chunks"),
        "samples": len(samples),
    }
    checks = {
        "exit 0": svc.returncode == 0,
        "at least 3 samples after warm-up": len(warm) >= 3,
        "RSS growth < 5 MB after warm-up": result["rss_growth_mb"] is not None and result["rss_growth_mb"] < 5,
        "threads do not grow": bool(warm) and warm[-1]["threads"] <= warm[0]["threads"],
        "fds do not grow": bool(warm) and warm[-1]["fds"] <= warm[0]["fds"],
        "every event delivered": result["events_delivered"] == len(produced) and len(produced) > 0,
        "queue drained": queue_rows == 0,
    }
    result["checks"] = checks
    result["curve"] = [{k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}
                       for s in samples[:: max(1, len(samples) // 40)]]
    if svc.returncode:
        result["stderr_tail"] = [ln.decode(errors="replace").rstrip() for ln in stderr_tail]
    print(json.dumps(result, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
