"""The MQTT contract (docs/mqtt.md, JSON schemas in edge/schemas/) and delivery through the durable outbox.

Everything a subscriber sees is built here: topics, the event, state and stats payloads, and the Home
Assistant discovery. Topics, under <prefix>/<device_id>/:
  availability  retained "online" / "offline" (also the last will)
  state         retained JSON: emotion, confidence, scores, speech, arousal, valence, time
  event         JSON: event_type (the emotion), type (start/update/end), id, score, top_score, ...
  stats         JSON every stats_interval_s (not queued: a stale stats message has no value)
Home Assistant device discovery: <discovery_prefix>/device/<device_id>/config (retained).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from . import __version__
from .config import Config, ConfigError, mask_url, read_password
from .outbox import Outbox

if TYPE_CHECKING:
    from .pipeline import Event, State

log = logging.getLogger("ser_edge")
MAX_INFLIGHT = 20


# --------------------------------------------------------------------------------------------------
# payloads (edge/schemas/event.json, state.json, stats.json)


def iso_time(t: float) -> str:
    """Wall-clock seconds -> ISO 8601 UTC with milliseconds, as every payload carries time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def event_payload(e: Event) -> dict:
    return {"event_type": e.emotion, "type": e.type, "id": e.id, "score": round(e.score, 4),
            "top_score": round(e.top_score, 4), "start_time": iso_time(e.start_time),
            "end_time": iso_time(e.end_time) if e.end_time else None, "offset_s": round(e.offset_s, 3)}


def restart_end_payload(left_open: dict, now: float) -> dict:
    """The `end` of an event a crashed run left open, sent by the next start."""
    return {**left_open, "type": "end", "end_time": iso_time(now), "reason": "restart"}


def state_payload(s: State) -> dict:
    return {"emotion": s.emotion, "confidence": round(s.confidence, 4), "speech": s.speech,
            "arousal": s.arousal, "valence": s.valence,
            "scores": {lab: round(v, 3) for lab, v in s.scores.items()},
            "offset_s": round(s.offset_s, 3), "time": iso_time(s.time)}


@dataclass(frozen=True)
class Health:
    """What the stats message reports, gathered by the service from its parts."""
    uptime_s: float
    audio_s: float
    cpu_s: float
    inference_ms: tuple[float, float]  # p50, p95
    feature_ms: tuple[float, float]
    rss_mb: float
    windows: int
    gated: int
    gated_why: dict  # quiet, not_voice, dead_mic -> windows
    dropped_chunks: int
    overflows: int
    source_outages: int
    source_restarts: int
    source_gap_s: float
    source_lost: bool
    dead_mic: bool
    adapted_speech_s: float
    adapted_speech_s_by_group: dict | None  # voice group -> seconds; None with one set of statistics
    queued: int
    dropped_messages: int
    queue_errors: int
    runtime: str
    model_sha256: str
    board: dict  # temp_c, throttled where the Pi exposes them


def stats_payload(h: Health) -> dict:
    return {"uptime_s": round(h.uptime_s, 1), "audio_s": round(h.audio_s, 1),
            "inference_ms_p50": h.inference_ms[0], "inference_ms_p95": h.inference_ms[1],
            "feature_ms_p50": h.feature_ms[0], "feature_ms_p95": h.feature_ms[1],
            "rtf": round(h.cpu_s / max(h.audio_s, 1e-9), 4), "cpu_pct": round(100 * h.cpu_s / max(h.uptime_s, 1e-9), 1),
            "rss_mb": h.rss_mb, "windows": h.windows, "gated": h.gated,
            "gated_quiet": h.gated_why.get("quiet", 0), "gated_not_voice": h.gated_why.get("not_voice", 0),
            "gated_dead_mic": h.gated_why.get("dead_mic", 0),
            "dropped_chunks": h.dropped_chunks, "overflows": h.overflows,
            "source_outages": h.source_outages, "source_restarts": h.source_restarts,
            "source_gap_s": round(h.source_gap_s, 1), "source_lost": h.source_lost, "dead_mic": h.dead_mic,
            "adapted_speech_s": round(h.adapted_speech_s, 1),
            **({"adapted_speech_s_by_group": {k: round(v, 1) for k, v in h.adapted_speech_s_by_group.items()}}
               if h.adapted_speech_s_by_group is not None else {}),
            "queued": h.queued,
            "dropped_messages": h.dropped_messages, "queue_errors": h.queue_errors,
            "version": __version__, "runtime": h.runtime, "model_sha256": h.model_sha256[:16], **h.board}


# --------------------------------------------------------------------------------------------------
# topics, discovery, delivery


@dataclass
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None


def parse_broker(url: str) -> BrokerAddress:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ConfigError(f"broker {mask_url(url)!r}: expected mqtt://[user@]host[:port] or mqtts://...")
    tls = u.scheme == "mqtts"
    return BrokerAddress(u.hostname, u.port or (8883 if tls else 1883), tls, u.username)


def safe_id(s: str) -> str:
    """Topic- and entity-safe device id."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", s).strip("_").lower() or "ser_edge"


class Topics:
    def __init__(self, prefix: str, device_id: str, discovery_prefix: str = "homeassistant"):
        base = f"{prefix}/{device_id}"
        self.base = base
        self.availability = f"{base}/availability"
        self.state = f"{base}/state"
        self.event = f"{base}/event"
        self.stats = f"{base}/stats"
        self.discovery = f"{discovery_prefix}/device/{device_id}/config"
        self.ha_status = f"{discovery_prefix}/status"


def discovery_payload(topics: Topics, device_id: str, name: str, labels: list[str], model_name: str) -> dict:
    """Home Assistant device-based discovery: one device, seven entities. Abbreviated keys keep it small."""
    d = device_id
    comps = {
        "emotion": {
            "p": "sensor",
            "name": "Emotion",
            "uniq_id": f"{d}_emotion",
            "default_entity_id": f"sensor.{d}_emotion",
            "stat_t": "~/state",
            "val_tpl": "{{value_json.emotion}}",
        },
        "confidence": {
            "p": "sensor",
            "name": "Confidence",
            "uniq_id": f"{d}_confidence",
            "default_entity_id": f"sensor.{d}_confidence",
            "stat_t": "~/state",
            "unit_of_meas": "%",
            "stat_cla": "measurement",
            "val_tpl": "{{(value_json.confidence*100)|round(0)}}",
        },
        "speech": {
            "p": "binary_sensor",
            "name": "Speech",
            "uniq_id": f"{d}_speech",
            "default_entity_id": f"binary_sensor.{d}_speech",
            "stat_t": "~/state",
            "dev_cla": "sound",
            "val_tpl": "{{'ON' if value_json.speech else 'OFF'}}",
        },
        # measurement sensors: Home Assistant keeps their long-term statistics ("low mood all evening");
        # "None" (no speech) makes the entity unknown, which the statistics skip
        "arousal": {
            "p": "sensor",
            "name": "Arousal",
            "uniq_id": f"{d}_arousal",
            "default_entity_id": f"sensor.{d}_arousal",
            "stat_t": "~/state",
            "stat_cla": "measurement",
            "suggested_display_precision": 2,
            "val_tpl": "{{value_json.arousal if value_json.arousal is not none else 'None'}}",
        },
        "valence": {
            "p": "sensor",
            "name": "Valence",
            "uniq_id": f"{d}_valence",
            "default_entity_id": f"sensor.{d}_valence",
            "stat_t": "~/state",
            "stat_cla": "measurement",
            "suggested_display_precision": 2,
            "val_tpl": "{{value_json.valence if value_json.valence is not none else 'None'}}",
        },
        "event": {
            "p": "event",
            "name": "Event",
            "uniq_id": f"{d}_event",
            "default_entity_id": f"event.{d}_emotion_event",
            "stat_t": "~/event",
            "evt_typ": labels,
        },
        "rtf": {
            "p": "sensor",
            "name": "RTF",
            "uniq_id": f"{d}_rtf",
            "default_entity_id": f"sensor.{d}_real_time_factor",
            "stat_t": "~/stats",
            "val_tpl": "{{value_json.rtf}}",
            "ent_cat": "diagnostic",
        },
    }
    # Home Assistant expands "~" only inside a component and refuses it at the device level ("extra keys
    # not allowed @ data['~']": no device appears), and does not pass a device-level qos down; so the
    # base topic, QoS and availability go into every component
    for c in comps.values():
        c.update({"~": topics.base, "qos": 1, "avty_t": "~/availability"})
    return {
        "dev": {"ids": [d], "name": name, "mf": "ser-edge", "mdl": model_name, "sw": __version__},
        "o": {"name": "ser-edge"},
        "cmps": comps,
    }


class Publisher:
    """Owns the MQTT connection; drains the outbox in order whenever connected."""

    def __init__(
        self,
        cfg: Config,
        device_id: str,
        device_name: str,
        labels: list[str],
        model_name: str,
        outbox: Outbox,
        broker_url: str,
    ):
        m = cfg.mqtt
        self.addr = parse_broker(broker_url)
        self.topics = Topics(m.prefix, device_id, m.discovery_prefix)
        self.outbox = outbox
        self.discovery_enabled = m.discovery
        self.discovery = json.dumps(
            discovery_payload(self.topics, device_id, device_name, labels, model_name), separators=(",", ":")
        )
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._reset = threading.Event()
        self._wake = threading.Event()
        self.inflight: dict[int, int] = {}
        self.delivered = 0
        self._unreachable_logged = False

        username = m.username or self.addr.username
        password = read_password(cfg)
        if password and not self.addr.tls and not m.allow_plaintext_password:
            raise ConfigError(
                f"{cfg.source}: [mqtt] a password would be sent without TLS to {self.addr.host}; "
                "use mqtts:// or set allow_plaintext_password = true"
            )
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"ser-edge-{device_id}", clean_session=True
        )
        if username:
            self.client.username_pw_set(username, password)
        if self.addr.tls:
            self.client.tls_set(
                ca_certs=m.tls_ca or None,
                certfile=m.tls_cert or None,
                keyfile=m.tls_key or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.keepalive = m.keepalive_s
        self._drainer = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)

    # --- connection ---------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.addr.host, self.addr.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._drainer.start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.addr.host, self.addr.port, reason_code)
            return
        log.info("connected to broker %s:%d", self.addr.host, self.addr.port)
        self._unreachable_logged = False
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        if self.discovery_enabled:
            client.subscribe(self.topics.ha_status, qos=1)
            client.publish(self.topics.discovery, self.discovery, qos=1, retain=True)
        self._reset.set()  # resend everything not yet acknowledged, in order
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.stopping.is_set():
            pass
        elif self.connected.is_set():
            log.warning("lost the broker connection (%s); queueing until it is back", reason_code)
        elif not self._unreachable_logged and not self.stopping.is_set():
            log.warning("broker %s:%d unreachable; queueing and retrying", self.addr.host, self.addr.port)
            self._unreachable_logged = True
        self.connected.clear()

    def _on_connect_fail(self, client, userdata):
        if not self._unreachable_logged and not self.stopping.is_set():
            log.warning("broker %s:%d unreachable; queueing and retrying", self.addr.host, self.addr.port)
            self._unreachable_logged = True

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.put(mid)  # handled on the drain thread (no locks shared with paho's callbacks)
        self._wake.set()

    def _on_message(self, client, userdata, msg):
        # The only subscription: Home Assistant's birth message. Anything but "online" is ignored.
        if msg.topic == self.topics.ha_status and msg.payload == b"online" and self.discovery_enabled:
            client.publish(self.topics.discovery, self.discovery, qos=1, retain=True)

    # --- delivery -----------------------------------------------------------------------------
    def enqueue(self, topic: str, payload: dict, retain: bool = False) -> None:
        self.outbox.put(topic, json.dumps(payload, separators=(",", ":")).encode(), 1, retain)
        self._wake.set()

    def publish_event(self, payload: dict) -> None:
        self.enqueue(self.topics.event, payload)

    def publish_state(self, payload: dict) -> None:
        self.enqueue(self.topics.state, payload, retain=True)

    def publish_stats(self, payload: dict) -> None:
        if self.connected.is_set():
            self.client.publish(self.topics.stats, json.dumps(payload, separators=(",", ":")), qos=0)

    def _drain_loop(self) -> None:
        last_sent = 0
        while True:
            while True:
                try:
                    mid = self._acks.get_nowait()
                except queue.Empty:
                    break
                row = self.inflight.pop(mid, None)
                if row is not None:
                    self.outbox.ack(row)
                    self.delivered += 1
            if self._reset.is_set():
                self._reset.clear()
                self.inflight.clear()
                last_sent = 0
            if self.connected.is_set() and len(self.inflight) < MAX_INFLIGHT:
                for msg_id, topic, payload, qos, retain in self.outbox.peek(
                    last_sent, MAX_INFLIGHT - len(self.inflight)
                ):
                    info = self.client.publish(topic, payload, qos=qos, retain=retain)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break
                    self.inflight[info.mid] = msg_id
                    last_sent = msg_id
            if self.stopping.is_set() and not self.connected.is_set():
                return
            self._wake.wait(0.2)
            self._wake.clear()

    @property
    def pending(self) -> int:
        return len(self.outbox)

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or `timeout` seconds pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.outbox) == 0:
                return True
            time.sleep(0.05)
        return len(self.outbox) == 0

    def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: deliver what we can, publish 'offline', disconnect. Undelivered stays queued."""
        self.flush(timeout if self.connected.is_set() else 0)
        self.stopping.set()
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self.stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self._wake.set()
        self._drainer.join(2.0)
