"""A real Home Assistant (from PyPI, Python 3.13 in a Debian 13 root) with its MQTT integration set up
through the config flow against the test mosquitto, and the service on the demo recording: the device
and its entities appear, follow the speech, go unavailable on a stop and on kill -9, and come back right
after a crash; the shipped automations and dashboard load and point at real entities.

Slow to set up (Home Assistant is installed on first use): `make ha-check` runs it
(tools/ha_check.sh builds the root and sets SER_HA_ROOT / SER_HA_VENV); `make test` skips it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Subscriber, free_port
from test_dashboards import published_entities
from test_service_mqtt import run_args

HA_ROOT = os.environ.get("SER_HA_ROOT")
HA_VENV = os.environ.get("SER_HA_VENV", "/ha")
pytestmark = pytest.mark.skipif(not HA_ROOT, reason="needs a Home Assistant root: make ha-check")
yaml = pytest.importorskip("yaml")

DEVICE = "livingroom"
LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


class HomeAssistant:
    """hass in the chroot (same network: it reaches the test mosquitto on loopback), driven over REST."""

    def __init__(self, root: Path, config_dir: str, port: int):
        self.root, self.config_dir, self.port = root, config_dir, port
        self.base = f"http://127.0.0.1:{port}"
        self.token = None
        self.log = open(root / config_dir.lstrip("/") / "hass.out", "wb")
        self.proc = subprocess.Popen(["chroot", str(root), f"{HA_VENV}/bin/hass", "-c", config_dir],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_up(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hass exited:\n" + self.log_text()[-3000:])
            try:
                with urllib.request.urlopen(self.base + "/api/onboarding", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise RuntimeError("hass did not answer:\n" + self.log_text()[-3000:])

    def log_text(self) -> str:
        return (self.root / self.config_dir.lstrip("/") / "hass.out").read_text(errors="replace")

    def request(self, method, path, body=None, form=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: HTTP {e.code} {e.read().decode()[:500]}") from None
        return json.loads(text) if text.strip().startswith(("{", "[")) else text

    def onboard(self):
        """The first user, as the onboarding screen creates it; then an access token."""
        client_id = self.base + "/"
        r = self.request("POST", "/api/onboarding/users", {"client_id": client_id, "name": "Test",
                                                            "username": "test", "password": "test-pass-1234",
                                                            "language": "en"})
        t = self.request("POST", "/auth/token", form={"grant_type": "authorization_code", "code": r["auth_code"],
                                                       "client_id": client_id})
        self.token = t["access_token"]

    def add_mqtt(self, port: int):
        """The MQTT integration through its config flow, as a user adds it in Settings."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        for _ in range(4):
            if flow["type"] == "create_entry":
                return flow
            if flow["type"] == "menu":
                flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                    {"next_step_id": "broker" if "broker" in flow["menu_options"] else
                                     flow["menu_options"][0]})
                continue
            assert flow["type"] == "form", flow
            flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                {"broker": "127.0.0.1", "port": port})
        raise AssertionError(f"the MQTT config flow did not finish: {flow}")

    def states(self) -> dict:
        return {s["entity_id"]: s for s in self.request("GET", "/api/states")}

    def template(self, text: str) -> str:
        return self.request("POST", "/api/template", {"template": text})

    def wait_for(self, what, check, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.states()
            if check(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{what}: not reached in {timeout} s; states: "
                             + json.dumps({k: v["state"] for k, v in (last or {}).items() if DEVICE in k}))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def write_config(cfg: Path, http_port: int):
    cfg.mkdir(parents=True)
    (cfg / "configuration.yaml").write_text(f"""
homeassistant:
  name: ser-edge check
  latitude: 52.52
  longitude: 13.40
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: DE
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {http_port}
api:
config:
onboarding:
automation: !include automations.yaml
lovelace:
  dashboards:
    ser-emotion:
      mode: yaml
      filename: dashboard.yaml
      title: Emotion
      show_in_sidebar: true
logger:
  default: warning
""")
    shutil.copy(ROOT / "docs/homeassistant/automations.yaml", cfg / "automations.yaml")
    shutil.copy(ROOT / "docs/homeassistant/dashboard.yaml", cfg / "dashboard.yaml")


@pytest.fixture(scope="module")
def ha_env(tmp_path_factory):
    """mosquitto on loopback + a configured Home Assistant (onboarded, MQTT integration added)."""
    from conftest import Mosquitto

    root = Path(HA_ROOT).resolve()
    tmp = tmp_path_factory.mktemp("ha")
    broker = Mosquitto(tmp, free_port()).start()
    mounted = not os.path.ismount(root / "proc")
    if mounted:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    config_dir, http_port = f"/srv/ha-check-{os.getpid()}", free_port()
    write_config(root / config_dir.lstrip("/"), http_port)
    check = subprocess.run(["chroot", str(root), f"{HA_VENV}/bin/hass", "--script", "check_config", "-c", config_dir],
                           capture_output=True, text=True, timeout=600)
    ha = HomeAssistant(root, config_dir, http_port)
    try:
        ha.wait_up()
        ha.onboard()
        ha.add_mqtt(broker.port)
        yield ha, broker, tmp, check
    finally:
        ha.stop()
        broker.stop()
        if os.environ.get("SER_HA_KEEP") is None:
            shutil.rmtree(root / config_dir.lstrip("/"), ignore_errors=True)
        if mounted:
            subprocess.run(["umount", str(root / "proc")])


def service(broker, tmp, *extra, source=None, speed="1"):
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *run_args(broker.url, tmp, *extra, source=source,
                                                                         device=DEVICE, speed=speed)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def test_shipped_configuration_passes_check_config(ha_env):
    ha, broker, tmp, check = ha_env
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Failed config" not in check.stdout and "Invalid config" not in check.stdout, check.stdout


def test_device_entities_states_events_availability_and_crash_restart(ha_env):
    ha, broker, tmp, _ = ha_env
    want = published_entities(DEVICE)
    sub = Subscriber(broker.port)

    # 1. the demo, in real time: the device and its entities appear, states follow the speech
    p = service(broker, tmp, speed="1")
    seen_emotions, seen_speech, seen_events = set(), set(), set()
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        s = ha.states()
        seen_emotions.add(s.get(f"sensor.{DEVICE}_emotion", {}).get("state"))
        seen_speech.add(s.get(f"binary_sensor.{DEVICE}_speech", {}).get("state"))
        a = s.get(f"event.{DEVICE}_emotion_event", {}).get("attributes", {})
        if "id" in a:
            seen_events.add((a["id"], a["type"], a["event_type"]))
        time.sleep(0.3)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "Invalid MQTT device discovery payload" not in ha.log_text(), ha.log_text()[-2000:]

    s = ha.states()
    assert want <= set(s), f"entities missing in Home Assistant: {sorted(want - set(s))}"
    device_entities = set(ha.template(f"{{{{ device_entities(device_id('sensor.{DEVICE}_emotion')) | to_json }}}}"))
    assert device_entities == want, "one device holding exactly the discovered entities"
    assert ha.template(f"{{{{ device_attr(device_id('sensor.{DEVICE}_emotion'), 'name') }}}}") == f"Emotion {DEVICE}"

    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    started = {e["event_type"] for e in printed if e["type"] == "start"}
    assert started, "the demo gives events"
    assert started & seen_emotions, f"HA showed {seen_emotions}, the service started {started}"
    assert {"on", "off"} <= seen_speech, seen_speech

    # the event entity carried the published events' fields; the clean stop made everything unavailable
    published = {(e["id"], e["type"], e["event_type"]) for e in sub.payloads("/event")}
    assert len(seen_events) >= 2 and seen_events <= published, (seen_events, published)
    ha.wait_for("unavailable after a clean stop", lambda st: all(st[e]["state"] == "unavailable" for e in want))

    # 2. kill -9 during an event: the will makes the device unavailable
    p = service(broker, tmp, speed="1")
    first = None
    deadline = time.time() + 60
    while time.time() < deadline and first is None:
        line = p.stdout.readline()
        if line.startswith("{") and json.loads(line)["type"] == "start":
            first = json.loads(line)
    assert first, "an event started before the kill"
    ha.wait_for("the open event shown", lambda st: st[f"sensor.{DEVICE}_emotion"]["state"] == first["event_type"])
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    ha.wait_for("unavailable after kill -9", lambda st: all(st[e]["state"] == "unavailable" for e in want))

    # 3. restart on silence: available again, the state says no emotion, the open event was ended
    from edge.audio import write_wav

    silence = tmp / "silence.wav"
    write_wav(silence, np.zeros(16000 * 4, np.float32))
    p = service(broker, tmp, source=silence, speed="1")
    st = ha.wait_for("state after the restart", lambda st: st[f"sensor.{DEVICE}_emotion"]["state"] == "none"
                     and st[f"event.{DEVICE}_emotion_event"]["attributes"].get("type") == "end", timeout=30)
    ev = st[f"event.{DEVICE}_emotion_event"]["attributes"]
    assert ev["id"] == first["id"] and ev["reason"] == "restart", ev
    assert st[f"binary_sensor.{DEVICE}_speech"]["state"] == "off"
    p.communicate(timeout=60)
    sub.stop()


def test_shipped_automations_and_dashboard_load_and_reference_existing_entities(ha_env):
    ha, broker, tmp, _ = ha_env
    autos = yaml.safe_load((ROOT / "docs/homeassistant/automations.yaml").read_text())
    s = ha.states()
    loaded = {v["attributes"].get("id") for k, v in s.items() if k.startswith("automation.")}
    assert {a["id"] for a in autos} <= loaded, f"automations not loaded: {sorted({a['id'] for a in autos} - loaded)}"
    for k, v in s.items():
        if k.startswith("automation."):
            assert v["state"] == "on", (k, v["state"])
    # entity ids referenced by the automations and the dashboard all exist in this Home Assistant
    for name in ("automations.yaml", "dashboard.yaml"):
        text = (ROOT / "docs/homeassistant" / name).read_text()
        refs = set(re.findall(r"\b(?:sensor|binary_sensor|event)\.[a-z0-9_]+", text))
        assert refs and refs <= set(s), f"{name} points at entities HA does not have: {sorted(refs - set(s))}"
    # the dashboard loads in Home Assistant (websocket lovelace/config, with HA's own aiohttp)
    script = f"""
import asyncio, json, aiohttp
async def main():
    async with aiohttp.ClientSession() as s, s.ws_connect("{ha.base}/api/websocket") as ws:
        await ws.receive_json(); await ws.send_json({{"type": "auth", "access_token": "{ha.token}"}})
        assert (await ws.receive_json())["type"] == "auth_ok"
        await ws.send_json({{"id": 1, "type": "lovelace/config", "url_path": "ser-emotion"}})
        print(json.dumps(await ws.receive_json()))
asyncio.run(main())
"""
    r = subprocess.run(
        ["chroot", str(ha.root), f"{HA_VENV}/bin/python", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout.strip().splitlines()[-1])
    assert answer["success"], answer
    assert answer["result"]["views"][0]["cards"]
