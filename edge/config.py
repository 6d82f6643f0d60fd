"""The configuration: one frozen dataclass per section, whose fields carry their documentation and limits.

A config is a TOML file of sections. Every key is a field below with its type, default, allowed range and
a one-line description; validation, the line-numbered errors and the documented example
`firmware_config/ser-edge.toml` (a test checks they agree) are all driven by those fields. Any unknown
key, wrong type or out-of-range value is a ConfigError naming the file, the key, its line and what was
expected. Code reads settings as attributes: `cfg.mqtt.broker`, `cfg.gate.min_dbfs`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A config problem; the message names the file, the key and what was expected."""


def setting(default, doc: str, *, min: float | None = None, max: float | None = None, choices: tuple | None = None):
    """A config key: its default, a one-line description, and the limits validation enforces."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DeviceSettings:
    id: str = setting("", "device id in MQTT topics and Home Assistant; empty = the host name")
    name: str = setting("", "human-readable name shown in Home Assistant; empty = 'Emotion <id>'")


@dataclass(frozen=True)
class AudioSettings:
    source: str = setting("mic:default", "mic:NAME|INDEX, cmd:COMMAND (raw S16_LE mono 16 kHz), file:PATH or stdin")
    speed: float = setting(1.0, "file source pacing: 1 = real time, 20 = 20x, 0 = as fast as possible",
                           min=0, max=100000)
    chunk_ms: int = setting(100, "audio chunk size handed from the capture thread", min=10, max=1000)
    queue_chunks: int = setting(100, "capture queue bound; chunks beyond it are dropped and counted", min=2, max=10000)
    mic_rate: int = setting(0, "rate to open the microphone at; 0 = 16000 if supported, else its default",
                            min=0, max=384000)
    reopen_max_s: float = setting(30.0, "longest wait between attempts to reopen a lost device", min=1, max=3600)


@dataclass(frozen=True)
class ModelSettings:
    path: str = setting("", "model file; empty = the bundled default model")
    num_threads: int = setting(1, "interpreter threads (1 leaves the Pi's other cores to other services)", min=1, max=8)
    hop_s: float = setting(0.0, "seconds between windows; 0 = the model's own hop", min=0, max=10)
    require_int8: bool = setting(True, "refuse float models (several times slower on a Pi's CPU)")


@dataclass(frozen=True)
class GateSettings:
    min_dbfs: float = setting(-53.0, "windows quieter than this (RMS, dBFS) are not speech", min=-120, max=0)
    min_dynamic_db: float = setting(12.0, "speech varies: needed spread between quiet and loud frames", min=0, max=80)
    min_active_fraction: float = setting(0.2, "fraction of frames that must be active", min=0, max=1)
    dead_mic_s: float = setting(10.0, "all-zero or constant input for this long is reported once", min=1, max=3600)
    voice_check: bool = setting(True, "a second check that a loud window is a voice, not music, a tap or a dog")
    voice_threshold: float = setting(0.0, "P(voice) a window needs; 0 = the check's own threshold "
                                     "(edge/models/speech-check-mel.json for 64-band log-mel "
                                     "models, else speech-check.json)", min=0, max=1)


@dataclass(frozen=True)
class SmoothingSettings:
    method: str = setting("ema", "average over recent speech windows: ema or mean", choices=("ema", "mean"))
    alpha: float = setting(0.7, "EMA weight of the newest window", min=0.01, max=1)
    windows: int = setting(3, "windows averaged by method = mean", min=1, max=100)
    threshold: float = setting(0.2, "smoothed score needed to start an emotion event", min=0, max=1)
    hysteresis: float = setting(0.1, "margin for switching emotion or ending below the threshold", min=0, max=1)
    min_duration_s: float = setting(0.5, "an emotion must hold this long before an event starts", min=0, max=60)
    end_after_s: float = setting(2.0, "silence that ends an ongoing event", min=0, max=600)
    update_interval_s: float = setting(5.0, "at most one 'update' per event this often", min=0, max=3600)


@dataclass(frozen=True)
class AdaptationSettings:
    enabled: bool = setting(True, "learn this device's speech statistics (models with 'device' normalisation)")
    memory_s: float = setting(1800.0, "seconds of speech after which old speech has faded (time constant)",
                              min=60, max=10_000_000)
    prior_s: float = setting(30.0, "the training statistics count as this many seconds of speech at first",
                             min=1, max=100_000)
    save_interval_s: float = setting(300.0, "how often the statistics are saved to the state directory",
                                     min=10, max=86400)
    voice_groups: bool = setting(False, "keep a set of statistics per voice group (lower / higher voices), for "
                                       "a device several people share")
    voice_groups_file: str = setting("", "the voice-group classifier (ser-convert voice-groups); empty = the one "
                                         "shipped beside the default model")


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = setting(True, "publish to MQTT")
    broker: str = setting("", "mqtt://[user@]host[:port] or mqtts://...; empty = embedded broker on 127.0.0.1:1883 "
                          "if amqtt is installed, else mqtt://localhost:1883")
    prefix: str = setting("ser", "topic prefix: <prefix>/<device id>/...")
    username: str = setting("", "broker user name")
    password_file: str = setting("", "file holding the password (systemd credential: "
                                 "$CREDENTIALS_DIRECTORY/mqtt_password)")
    allow_plaintext_password: bool = setting(False, "allow sending a password without TLS")
    tls_ca: str = setting("", "CA certificate file (mqtts:// uses the system CAs when empty)")
    tls_cert: str = setting("", "client certificate file")
    tls_key: str = setting("", "client key file")
    keepalive_s: int = setting(30, "MQTT keepalive", min=5, max=3600)
    discovery: bool = setting(True, "publish Home Assistant discovery")
    discovery_prefix: str = setting("homeassistant", "Home Assistant discovery prefix")
    stats_interval_s: float = setting(60.0, "seconds between stats messages", min=1, max=86400)


@dataclass(frozen=True)
class StateSettings:
    dir: str = setting("", "state directory (queue); empty = $STATE_DIRECTORY or ~/.local/state/ser-edge")
    queue_max: int = setting(10000, "messages kept while the broker is away; beyond it the oldest are dropped",
                             min=10, max=10_000_000)


@dataclass(frozen=True)
class LedSettings:
    enabled: bool = setting(False, "drive LEDs with gpiozero")
    rgb_pins: list = setting([], "[red, green, blue] BCM pins of one RGB LED; empty = none")
    emotion_pins: dict = setting({}, "one LED per emotion: {angry = 17, happy = 27, ...}")
    speech_pin: int = setting(0, "BCM pin of a speech indicator LED; 0 = none", min=0, max=27)


@dataclass(frozen=True)
class LoggingSettings:
    level: str = setting("info", "debug, info, warning or error", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Config:
    """Validated settings, one section per TOML table. `source` is the file they came from (or None)."""

    device: DeviceSettings = field(default_factory=DeviceSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    adaptation: AdaptationSettings = field(default_factory=AdaptationSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    state: StateSettings = field(default_factory=StateSettings)
    leds: LedSettings = field(default_factory=LedSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict:
        """{section: {key: value}}, as the TOML file would hold it."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def with_changes(self, changes: dict, where: str = "command line") -> Config:
        """A copy with {section: {key: value}} changed, validated like a file (errors name `where`)."""
        data = self.as_dict()
        for section, values in changes.items():
            data.setdefault(section, {}).update(values)
        return dataclasses.replace(validate(data, where), source=self.source)

    def changed_keys(self, other: Config) -> list[str]:
        """'section.key' for every setting that differs between the two configs."""
        a, b = self.as_dict(), other.as_dict()
        return [f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k]]


# section name -> its dataclass, in the order of the file
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "source"}
_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list",
          dict: "a table"}


def _keys(section: str) -> dict[str, tuple[type, dataclasses.Field]]:
    """key -> (its type, its field) for one section."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def defaults() -> Config:
    return Config()


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


def _expected(kind: type, f: dataclasses.Field) -> str:
    m = f.metadata
    what = f"one of {', '.join(repr(c) for c in m['choices'])}" if m["choices"] else _NAMES[kind]
    if m["min"] is not None and m["max"] is not None:
        what += f" in {m['min']:g}..{m['max']:g}"
    return what


def _check(kind: type, f: dataclasses.Field, value, where: str) -> None:
    accepted = (int, float) if kind is float else (kind,)  # a number may be written without a decimal point
    if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: expected {_expected(kind, f)}, got {type(value).__name__} {value!r}")
    m = f.metadata
    if m["choices"] and value not in m["choices"]:
        raise ConfigError(f"{where}: expected {_expected(kind, f)}, got {value!r}")
    if kind in (int, float) and ((m["min"] is not None and value < m["min"]) or
                                 (m["max"] is not None and value > m["max"])):
        raise ConfigError(f"{where}: expected {_expected(kind, f)}, got {value!r}")


def validate(data: dict, filename: str = "<config>", text: str = "") -> Config:
    """Check `data` (parsed TOML) against the section dataclasses and merge it over the defaults."""
    sections = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{filename}{_line_of(text, section, None)}: unknown section [{section}]; "
                              f"expected one of {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{filename}: '{section}' must be a [section] table")
        keys = _keys(section)
        for key, value in values.items():
            where = f"{filename}{_line_of(text, section, key)}: [{section}] {key}"
            if key not in keys:
                raise ConfigError(f"{where}: unknown key; expected one of {', '.join(keys)}")
            _check(*keys[key], value, where)
        sections[section] = SECTIONS[section](**values)
    cfg = Config(**sections, source=filename)
    _cross_checks(cfg, filename, text)
    return cfg


def mask_url(url: str) -> str:
    """The URL with anything after a ':' in its user part replaced, for messages."""
    return re.sub(r"^([a-zA-Z]*://[^:@/\s]*):[^@/\s]*@", r"\1:***@", url)


def _cross_checks(cfg: Config, filename: str, text: str) -> None:
    src = cfg.audio.source
    if not (src.startswith(("mic:", "cmd:", "file:")) or src == "stdin"):
        raise ConfigError(f"{filename}{_line_of(text, 'audio', 'source')}: [audio] source: expected mic:NAME, "
                          f"cmd:COMMAND, file:PATH or stdin, got {src!r}")
    b = cfg.mqtt.broker
    where = f"{filename}{_line_of(text, 'mqtt', 'broker')}: [mqtt] broker"
    if re.match(r"^[a-z]+://[^@/\s]*:[^@/\s]*@", b):
        raise ConfigError(f"{where}: a password in the URL is refused (it would show in logs and process lists); "
                          f"expected mqtt://[user@]host[:port] with [mqtt] password_file or $SER_MQTT_PASSWORD, "
                          f"got {mask_url(b)!r}")
    if b and not re.match(r"^mqtts?://([^@/\s:]+@)?[^:/\s]+(:\d+)?/?$", b):
        raise ConfigError(f"{where}: expected mqtt://[user@]host[:port] or mqtts://..., got {mask_url(b)!r}")
    pins = cfg.leds.rgb_pins
    if pins and (len(pins) != 3 or not all(isinstance(p, int) and 0 < p <= 27 for p in pins)):
        raise ConfigError(f"{filename}{_line_of(text, 'leds', 'rgb_pins')}: [leds] rgb_pins: expected three "
                          f"BCM pin numbers 1..27, got {pins!r}")
    for label, pin in cfg.leds.emotion_pins.items():
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
    if _has_secret(data) and os.stat(path).st_mode & 0o004:
        import logging

        logging.getLogger("ser_edge").warning("%s holds MQTT credentials and is world-readable; chmod 640 it", path)
    return cfg


def _has_secret(data: dict) -> bool:
    return bool(data.get("mqtt", {}).get("username") or data.get("mqtt", {}).get("password_file"))


def read_password(cfg: Config) -> str | None:
    """The MQTT password from $SER_MQTT_PASSWORD, [mqtt] password_file, or a systemd credential."""
    if os.environ.get("SER_MQTT_PASSWORD"):
        return os.environ["SER_MQTT_PASSWORD"]
    pf = cfg.mqtt.password_file
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
    defaults_ = Config().as_dict()
    for section in SECTIONS:
        out.append(f"[{section}]")
        for key, (kind, f) in _keys(section).items():
            limited = f.metadata["min"] is not None or f.metadata["choices"]
            out.append(f"# {f.metadata['doc']}" + (f" ({_expected(kind, f)})" if limited else ""))
            out.append(f"{key} = {_toml_value(defaults_[section][key])}")
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


def reference_tables() -> str:
    """The per-section tables of docs/config.md (`python -m edge.config` prints them; a test checks)."""
    out, defaults_ = [], Config().as_dict()
    for section in SECTIONS:
        out += [f"## [{section}]", "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for key, (kind, f) in _keys(section).items():
            out.append(f"| `{key}` | `{_toml_value(defaults_[section][key])}` | {_expected(kind, f)} | "
                       f"{f.metadata['doc']} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_tables())
