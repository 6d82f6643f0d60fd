"""The service against a real mosquitto: contract, schemas, discovery, retained state, last will,
TLS + password, broker outages with zero lost events, kill -9 with zero lost queued events, SIGHUP."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLE, Mosquitto, Subscriber, first_seen_order, free_port, ser_edge

jsonschema = pytest.importorskip("jsonschema")
SCHEMAS = {n: json.loads((ROOT / "edge" / "schemas" / f"{n}.json").read_text()) for n in ("event", "state", "stats")}


def started_ids(stdout):
    """Event ids the service reports having produced (--print-events), in order."""
    return [json.loads(l)["id"] for l in stdout.splitlines() if l.startswith("{") and '"type": "start"' in l]


def all_events(stdout):
    return [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]


def run_args(broker, tmp_path, *extra, source=None, device="t1", speed="0"):
    return ["run", "--source", f"file:{source or SAMPLE}", "--speed", speed, "--broker", broker,
            "--device-id", device, "--state-dir", str(tmp_path / "state"), "--print-events", *extra]


def test_contract_schemas_discovery_and_retained_state(mosquitto, tmp_path):
    sub = Subscriber(mosquitto.port)
    r = ser_edge(*run_args(mosquitto.url, tmp_path, "--stats-interval", "1"), timeout=120)
    time.sleep(0.5)
    sub.stop()
    assert r.returncode == 0, r.stderr
    produced = all_events(r.stdout)
    assert produced, "the demo recording produces events"
    events = sub.payloads("/event")
    assert [e["id"] for e in events if e["type"] == "start"] == started_ids(r.stdout)
    for e in events:
        jsonschema.validate(e, SCHEMAS["event"])
    states = sub.payloads("/state")
    assert states and any(s["speech"] for s in states)
    for s in states:
        jsonschema.validate(s, SCHEMAS["state"])
    stats = sub.payloads("/stats")
    assert stats
    for s in stats:
        jsonschema.validate(s, SCHEMAS["stats"])
    for topic, payload, _ in sub.messages:
        if not topic.endswith("/config"):
            assert len(payload) < 1024, topic
    avail = [p for t, p, _ in sub.messages if t == "ser/t1/availability"]
    assert avail[0] == b"online" and avail[-1] == b"offline"
    disc = sub.payloads("homeassistant/device/t1/config")[0]
    assert disc["dev"]["ids"] == ["t1"] and "~" not in disc and "qos" not in disc  # HA refuses "~" there
    assert all(c["~"] == "ser/t1" and c["qos"] == 1 and c["avty_t"] == "~/availability" for c in disc["cmps"].values())
    platforms = {c["p"] for c in disc["cmps"].values()}
    assert platforms == {"sensor", "binary_sensor", "event"}
    assert all("default_entity_id" in c and "object_id" not in c for c in disc["cmps"].values())
    assert set(disc["cmps"]["event"]["evt_typ"]) >= {e["event_type"] for e in events}
    # a late subscriber gets the retained state, availability and discovery
    late = Subscriber(mosquitto.port)
    time.sleep(0.5)
    late.stop()
    retained = {t: p for t, p, r in late.messages if r}
    assert json.loads(retained["ser/t1/state"])["emotion"] == "none"
    assert retained["ser/t1/availability"] == b"offline"
    assert "homeassistant/device/t1/config" in retained


def test_discovery_republished_when_home_assistant_comes_online(mosquitto, tmp_path):
    import paho.mqtt.client as mqtt

    p = subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(mosquitto.url, tmp_path, speed="1")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        sub = Subscriber(mosquitto.port, topics=("homeassistant/device/#",))
        time.sleep(0.5)
        n0 = len(sub.messages)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        for junk in (b"garbage", b"", b"\xff\xfe\x00binary", b"ONLINE", b"online ", b'{"state": "online"}',
                     b"x" * 200_000, b"offline"):
            c.publish("homeassistant/status", junk, qos=1).wait_for_publish()
        time.sleep(0.5)
        assert p.poll() is None, "junk on the subscribed topic does not stop the service"
        assert len(sub.messages) == n0, "anything but 'online' is ignored"
        c.publish("homeassistant/status", "online", qos=1).wait_for_publish()
        time.sleep(1)
        c.loop_stop()
        assert len(sub.messages) > n0
        sub.stop()
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(30)
    assert p.returncode == 0, err


def test_broker_down_at_start_then_up_loses_nothing(tmp_path):
    port = free_port()
    broker = Mosquitto(tmp_path, port)
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(f"mqtt://127.0.0.1:{port}", tmp_path, speed="5")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    broker.start()
    sub = Subscriber(port)
    try:
        out, err = p.communicate(timeout=90)
    finally:
        time.sleep(0.5)
        sub.stop()
        broker.stop()
    assert p.returncode == 0, err
    assert "unreachable" in err
    produced = [(e["id"], e["type"]) for e in all_events(out)]
    got = first_seen_order([(e["id"], e["type"]) for e in sub.payloads("/event")])
    # the subscriber joined after the broker started: everything produced arrives, in order
    assert got == produced


def test_broker_restarts_mid_stream_lose_no_events(tmp_path):
    port = free_port()
    broker = Mosquitto(tmp_path, port, persistent=True).start()
    sub = Subscriber(port, topics=("ser/#",), persistent=True)
    sub.c.reconnect_delay_set(0.1, 0.5)
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(f"mqtt://127.0.0.1:{port}", tmp_path, speed="4")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(3):
        time.sleep(1.5)
        broker.stop()
        time.sleep(0.7)
        broker.start()
    out, err = p.communicate(timeout=90)
    time.sleep(1)
    sub.stop()
    broker.stop()
    assert p.returncode == 0, err
    produced = [(e["id"], e["type"]) for e in all_events(out)]
    got = first_seen_order([(e["id"], e["type"]) for e in sub.payloads("/event")])
    # at-least-once: every produced event arrives (dedupe by id), in order of first arrival
    assert set(produced) <= set(got), (produced, got)
    assert [g for g in got if g in set(produced)] == produced


def test_kill_9_loses_no_queued_events(tmp_path):
    port = free_port()
    # no broker: events are queued on disk; the service is killed without any chance to clean up
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(f"mqtt://127.0.0.1:{port}", tmp_path, speed="2")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    produced = []
    deadline = time.time() + 60
    while time.time() < deadline and not produced:
        line = p.stdout.readline()
        if line.startswith("{"):
            produced.append(json.loads(line)["id"])
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert produced, "an event was produced before the kill"
    broker = Mosquitto(tmp_path, port).start()
    sub = Subscriber(port)
    silence = tmp_path / "silence.wav"
    import numpy as np

    from edge.audio import write_wav

    write_wav(silence, np.zeros(16000 * 3, np.float32))
    r = ser_edge(*run_args(f"mqtt://127.0.0.1:{port}", tmp_path, source=silence))
    time.sleep(0.5)
    sub.stop()
    broker.stop()
    assert r.returncode == 0, r.stderr
    events = sub.payloads("/event")
    assert set(produced) <= {e["id"] for e in events}
    # the event open at the kill is ended by the restart, and the state no longer shows it
    ends = [e for e in events if e["id"] == produced[0] and e["type"] == "end"]
    assert ends and ends[-1]["reason"] == "restart", events
    for e in ends:
        jsonschema.validate(e, SCHEMAS["event"])
    assert sub.payloads("/state")[-1]["emotion"] == "none"


def test_last_will_on_kill(mosquitto, tmp_path):
    sub = Subscriber(mosquitto.port)
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(mosquitto.url, tmp_path, speed="1")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(1)
    sub.stop()
    avail = [m for t, m, _ in sub.messages if t == "ser/t1/availability"]
    assert avail[0] == b"online" and avail[-1] == b"offline"


def test_sighup_with_bad_config_keeps_running(mosquitto, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[device]\nid = 'hup'\n")
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", f"file:{SAMPLE}",
                          "--speed", "1", "--broker", mosquitto.url, "--state-dir", str(tmp_path / "s")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    cfg.write_text("[device]\nid = 'hup'\n[gate]\nmin_dbfs = 'loud'\n")
    p.send_signal(signal.SIGHUP)
    time.sleep(2)
    assert p.poll() is None, "a bad config on SIGHUP must not stop the service"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(30)
    assert p.returncode == 0
    assert "reload refused" in err and "min_dbfs" in err


def _make_certs(d):
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=test-ca")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )


def test_tls_with_password(tmp_path):
    _make_certs(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "sensor", "pa55word"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    b = Mosquitto(
        tmp_path,
        port,
        extra_conf=f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\n"
        f"keyfile {tmp_path}/server.key\npassword_file {tmp_path}/passwd\n",
        anonymous=False,
    )
    b.start()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[mqtt]\ntls_ca = '{tmp_path}/ca.crt'\nusername = 'sensor'\n")
    os.chmod(cfg, 0o600)
    try:
        r = ser_edge(
            "run",
            "--config",
            str(cfg),
            *run_args(f"mqtts://127.0.0.1:{port}", tmp_path)[1:],
            env={"SER_MQTT_PASSWORD": "pa55word"},
        )
        assert r.returncode == 0, r.stderr
        assert "connected to broker" in r.stderr and "pa55word" not in r.stderr + r.stdout
        # the same password without TLS is refused before anything is sent
        r = ser_edge(
            "run",
            "--config",
            str(cfg),
            *run_args(f"mqtt://127.0.0.1:{port}", tmp_path)[1:],
            env={"SER_MQTT_PASSWORD": "pa55word"},
        )
        assert r.returncode == 2 and "without TLS" in r.stderr and "pa55word" not in r.stderr
    finally:
        b.stop()


def test_systemd_notifications(tmp_path):
    """READY, WATCHDOG (from the processing loop) and STOPPING reach $NOTIFY_SOCKET."""
    import socket as sk

    path = str(tmp_path / "notify.sock")
    s = sk.socket(sk.AF_UNIX, sk.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    r = ser_edge("run", "--no-mqtt", "--source", f"file:{SAMPLE}", "--speed", "0", env={"NOTIFY_SOCKET": path})
    assert r.returncode == 0, r.stderr
    got = []
    while True:
        try:
            got.append(s.recv(1024).decode())
        except OSError:
            break
    s.close()
    assert got[0].startswith("READY=1")
    assert "WATCHDOG=1" in got and got[-1] == "STOPPING=1"
