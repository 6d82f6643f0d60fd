"""The configuration schema: defaults, documentation and validation in one place.

A config is a TOML file of sections. Every key is declared below with its type, default, allowed range
and a one-line description; `firmware_config/ser-edge.toml` is generated from this table (and a test
checks they agree). Any unknown key, wrong type or out-of-range value is a ConfigError naming the file,
the key, its line and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config problem; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Key:
    type: type | tuple
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "device": {
        "id": Key(str, "", "device id in MQTT topics and Home Assistant; empty = the host name"),
        "name": Key(str, "", "human-readable name shown in Home Assistant; empty = 'Emotion <id>'"),
    },
    "audio": {
        "source": Key(str, "mic:default", "mic:NAME|INDEX, cmd:COMMAND (raw S16_LE mono 16 kHz), file:PATH or stdin"),
        "speed": Key((int, float), 1.0, "file source pacing: 1 = real time, 20 = 20x, 0 = as fast as possible",
                     min=0, max=100000),
        "chunk_ms": Key(int, 100, "audio chunk size handed from the capture thread", min=10, max=1000),
        "queue_chunks": Key(int, 100, "capture queue bound; chunks beyond it are dropped and counted", min=2, max=10000),
        "mic_rate": Key(int, 0, "rate to open the microphone at; 0 = 16000 if supported, else its default",
                        min=0, max=384000),
        "reopen_max_s": Key((int, float), 30.0, "longest wait between attempts to reopen a lost device", min=1, max=3600),
    },
    "model": {
        "path": Key(str, "", "model file; empty = the bundled default model"),
        "num_threads": Key(int, 1, "interpreter threads (1 leaves the Pi's other cores to other services)", min=1, max=8),
        "hop_s": Key((int, float), 0.0, "seconds between windows; 0 = the model's own hop", min=0, max=10),
        "require_int8": Key(bool, True, "refuse float models (several times slower on a Pi's CPU)"),
    },
    "gate": {
        "min_dbfs": Key((int, float), -50.0, "windows quieter than this (RMS, dBFS) are not speech", min=-120, max=0),
        "min_dynamic_db": Key((int, float), 12.0, "speech varies: needed spread between quiet and loud frames",
                              min=0, max=80),
        "min_active_fraction": Key((int, float), 0.2, "fraction of frames that must be active", min=0, max=1),
        "dead_mic_s": Key((int, float), 10.0, "all-zero or constant input for this long is reported once", min=1, max=3600),
    },
    "smoothing": {
        "method": Key(str, "ema", "average over recent speech windows: ema or mean", choices=("ema", "mean")),
        "alpha": Key((int, float), 0.5, "EMA weight of the newest window", min=0.01, max=1),
        "windows": Key(int, 3, "windows averaged by method = mean", min=1, max=100),
        "threshold": Key((int, float), 0.35, "smoothed score needed to start an emotion event", min=0, max=1),
        "hysteresis": Key((int, float), 0.1, "margin for switching emotion or ending below the threshold", min=0, max=1),
        "min_duration_s": Key((int, float), 1.0, "an emotion must hold this long before an event starts", min=0, max=60),
        "end_after_s": Key((int, float), 2.0, "silence that ends an ongoing event", min=0, max=600),
        "update_interval_s": Key((int, float), 5.0, "at most one 'update' per event this often", min=0, max=3600),
    },
    "adaptation": {
        "enabled": Key(bool, True, "learn this device's speech statistics (models with 'device' normalisation)"),
        "memory_s": Key((int, float), 1800.0, "seconds of speech after which old speech has faded (time constant)",
                        min=60, max=10_000_000),
        "prior_s": Key((int, float), 30.0, "the training statistics count as this many seconds of speech at first",
                       min=1, max=100_000),
        "save_interval_s": Key((int, float), 300.0, "how often the statistics are saved to the state directory",
                               min=10, max=86400),
    },
    "mqtt": {
        "enabled": Key(bool, True, "publish to MQTT"),
        "broker": Key(str, "", "mqtt://[user@]host[:port] or mqtts://...; empty = embedded broker on 127.0.0.1:1883 "
                      "if amqtt is installed, else mqtt://localhost:1883"),
        "prefix": Key(str, "ser", "topic prefix: <prefix>/<device id>/..."),
        "username": Key(str, "", "broker user name"),
        "password_file": Key(str, "", "file holding the password (systemd credential: $CREDENTIALS_DIRECTORY/mqtt_password)"),
        "allow_plaintext_password": Key(bool, False, "allow sending a password without TLS"),
        "tls_ca": Key(str, "", "CA certificate file (mqtts:// uses the system CAs when empty)"),
        "tls_cert": Key(str, "", "client certificate file"),
        "tls_key": Key(str, "", "client key file"),
        "keepalive_s": Key(int, 30, "MQTT keepalive", min=5, max=3600),
        "discovery": Key(bool, True, "publish Home Assistant discovery"),
        "discovery_prefix": Key(str, "homeassistant", "Home Assistant discovery prefix"),
        "stats_interval_s": Key((int, float), 60.0, "seconds between stats messages", min=1, max=86400),
    },
    "state": {
        "dir": Key(str, "", "state directory (queue); empty = $STATE_DIRECTORY or ~/.local/state/ser-edge"),
        "queue_max": Key(int, 10000, "messages kept while the broker is away; beyond it the oldest are dropped",
                         min=10, max=10_000_000),
    },
    "leds": {
        "enabled": Key(bool, False, "drive LEDs with gpiozero"),
        "rgb_pins": Key(list, [], "[red, green, blue] BCM pins of one RGB LED; empty = none"),
        "emotion_pins": Key(dict, {}, "one LED per emotion: {angry = 17, happy = 27, ...}"),
        "speech_pin": Key(int, 0, "BCM pin of a speech indicator LED; 0 = none", min=0, max=27),
    },
    "logging": {
        "level": Key(str, "info", "debug, info, warning or error", choices=("debug", "info", "warning", "error")),
    },
}


class Config(dict):
    """Validated settings: config["mqtt"]["broker"]. `source` is the file it came from (or None)."""

    source: str | None = None


def defaults() -> Config:
    c = Config({s: {k: (list(v.default) if isinstance(v.default, list) else dict(v.default)
                        if isinstance(v.default, dict) else v.default) for k, v in keys.items()}
                for s, keys in SCHEMA.items()})
    return c


def _line_of(text: str, section: str, key: str | None) -> str:
    """' (line N)' for a key in a section, when it can be found."""
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            current = m.group(1).strip()
            if key is None and current == section:
                return f" (line {n})"
            continue
        if key and current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return f" (line {n})"
    return ""


def _expected(k: Key) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list",
             dict: "a table"}
    t = k.type if isinstance(k.type, tuple) else (k.type,)
    what = "a number" if float in t else " or ".join(names[x] for x in t)
    if k.choices:
        what = "one of " + ", ".join(repr(c) for c in k.choices)
    if k.min is not None and k.max is not None:
        what += f" in {k.min:g}..{k.max:g}"
    return what


def validate(data: dict, filename: str = "<config>", text: str = "") -> Config:
    """Check `data` (parsed TOML) against SCHEMA and merge it over the defaults."""
    cfg = defaults()
    cfg.source = filename
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{filename}{_line_of(text, section, None)}: unknown section [{section}]; "
                              f"expected one of {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{filename}: '{section}' must be a [section] table")
        for key, value in values.items():
            spec = SCHEMA[section].get(key)
            where = f"{filename}{_line_of(text, section, key)}: [{section}] {key}"
            if spec is None:
                raise ConfigError(f"{where}: unknown key; expected one of {', '.join(SCHEMA[section])}")
            types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                raise ConfigError(f"{where}: expected {_expected(spec)}, got {type(value).__name__} {value!r}")
            if spec.choices and value not in spec.choices:
                raise ConfigError(f"{where}: expected {_expected(spec)}, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
                    raise ConfigError(f"{where}: expected {_expected(spec)}, got {value!r}")
            cfg[section][key] = value
    _cross_checks(cfg, filename, text)
    return cfg


def mask_url(url: str) -> str:
    """The URL with anything after a ':' in its user part replaced, for messages."""
    return re.sub(r"^([a-zA-Z]*://[^:@/\s]*):[^@/\s]*@", r"\1:***@", url)


def _cross_checks(cfg: Config, filename: str, text: str) -> None:
    src = cfg["audio"]["source"]
    if not (src.startswith(("mic:", "cmd:", "file:")) or src == "stdin"):
        raise ConfigError(f"{filename}{_line_of(text, 'audio', 'source')}: [audio] source: expected mic:NAME, "
                          f"cmd:COMMAND, file:PATH or stdin, got {src!r}")
    b = cfg["mqtt"]["broker"]
    where = f"{filename}{_line_of(text, 'mqtt', 'broker')}: [mqtt] broker"
    if re.match(r"^[a-z]+://[^@/\s]*:[^@/\s]*@", b):
        raise ConfigError(f"{where}: a password in the URL is refused (it would show in logs and process lists); "
                          f"expected mqtt://[user@]host[:port] with [mqtt] password_file or $SER_MQTT_PASSWORD, "
                          f"got {mask_url(b)!r}")
    if b and not re.match(r"^mqtts?://([^@/\s:]+@)?[^:/\s]+(:\d+)?/?$", b):
        raise ConfigError(f"{where}: expected mqtt://[user@]host[:port] or mqtts://..., got {mask_url(b)!r}")
    pins = cfg["leds"]["rgb_pins"]
    if pins and (len(pins) != 3 or not all(isinstance(p, int) and 0 < p <= 27 for p in pins)):
        raise ConfigError(f"{filename}{_line_of(text, 'leds', 'rgb_pins')}: [leds] rgb_pins: expected three "
                          f"BCM pin numbers 1..27, got {pins!r}")
    for label, pin in cfg["leds"]["emotion_pins"].items():
        if not isinstance(pin, int) or isinstance(pin, bool) or not 0 < pin <= 27:
            raise ConfigError(f"{filename}: [leds] emotion_pins.{label}: expected a BCM pin 1..27, got {pin!r}")


def load(path: str | Path | None) -> Config:
    """Read and validate a TOML config file; None = the defaults."""
    if path is None:
        return defaults()
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({getattr(e, 'strerror', None) or e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    cfg = validate(data, path, text)
    if _has_secret(data) and hasattr(os, "stat"):
        mode = os.stat(path).st_mode
        if mode & 0o004:
            import logging

            logging.getLogger("ser_edge").warning("%s holds MQTT credentials and is world-readable; "
                                                  "chmod 640 it", path)
    return cfg


def _has_secret(data: dict) -> bool:
    return bool(data.get("mqtt", {}).get("username") or data.get("mqtt", {}).get("password_file"))


def read_password(cfg: Config) -> str | None:
    """The MQTT password from $SER_MQTT_PASSWORD, [mqtt] password_file, or a systemd credential."""
    if os.environ.get("SER_MQTT_PASSWORD"):
        return os.environ["SER_MQTT_PASSWORD"]
    pf = cfg["mqtt"]["password_file"]
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not pf and cred_dir and Path(cred_dir, "mqtt_password").exists():
        pf = str(Path(cred_dir, "mqtt_password"))
    if pf:
        try:
            return Path(pf).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{cfg.source}: [mqtt] password_file: cannot read {pf} ({e.strerror})") from None
    return None


def example_toml() -> str:
    """The documented example config: every key, its default and what it means."""
    out = ["# ser-edge configuration. Every key is optional; shown with its default.",
           "# Check a file with: ser-edge check-config PATH", ""]
    for section, keys in SCHEMA.items():
        out.append(f"[{section}]")
        for key, spec in keys.items():
            out.append(f"# {spec.doc}" + (f" ({_expected(spec)})" if spec.min is not None or spec.choices else ""))
            out.append(f"{key} = {_toml_value(spec.default)}")
        out.append("")
    return "\n".join(out)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)
