"""Optional LED feedback through gpiozero: one RGB LED coloured by emotion, or one LED per emotion,
plus a speech indicator. Without gpiozero (or without a Pi) the feature is off with one log line."""

from __future__ import annotations

import logging

log = logging.getLogger("ser_edge")

COLOURS = {"neutral": (0.3, 0.3, 0.3), "calm": (0.0, 0.6, 0.6), "happy": (1.0, 0.8, 0.0), "sad": (0.0, 0.0, 1.0),
           "angry": (1.0, 0.0, 0.0), "fearful": (0.6, 0.0, 1.0), "disgust": (0.0, 1.0, 0.0),
           "surprised": (1.0, 0.4, 0.8), "none": (0.0, 0.0, 0.0)}


class Leds:
    def __init__(self, rgb_pins=(), emotion_pins=None, speech_pin: int = 0, pin_factory=None):
        self.rgb = None
        self.per_emotion = {}
        self.speech = None
        try:
            import gpiozero
        except ImportError:
            log.info("LEDs configured but gpiozero is not installed; LEDs off")
            self.available = False
            return
        kw = {"pin_factory": pin_factory} if pin_factory else {}
        try:
            if rgb_pins:
                self.rgb = gpiozero.RGBLED(*rgb_pins, **kw)
            for label, pin in (emotion_pins or {}).items():
                self.per_emotion[label] = gpiozero.LED(pin, **kw)
            if speech_pin:
                self.speech = gpiozero.LED(speech_pin, **kw)
            self.available = True
        except Exception as e:  # no GPIO here (not a Pi, no permission): say so once and carry on
            log.warning("LEDs unavailable (%s); LEDs off", e)
            self.available = False

    def show(self, emotion: str, speech: bool) -> None:
        if not self.available:
            return
        if self.rgb is not None:
            self.rgb.color = COLOURS.get(emotion, COLOURS["neutral"])
        for label, led in self.per_emotion.items():
            led.value = 1 if label == emotion else 0
        if self.speech is not None:
            self.speech.value = 1 if speech else 0

    def close(self) -> None:
        for dev in [self.rgb, self.speech, *self.per_emotion.values()]:
            if dev is not None:
                dev.close()
