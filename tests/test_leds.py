"""LEDs through gpiozero's own mock pin factory (no Pi needed)."""
import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from edge.leds import COLOURS, Leds  # noqa: E402


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def test_rgb_led_shows_the_emotion_colour(factory):
    leds = Leds(rgb_pins=(17, 27, 22), speech_pin=5, pin_factory=factory)
    leds.show("angry", True)
    assert factory.pin(17).state == pytest.approx(1.0) and factory.pin(27).state == 0 and factory.pin(22).state == 0
    assert factory.pin(5).state == 1
    leds.show("sad", False)
    assert factory.pin(22).state == pytest.approx(1.0) and factory.pin(17).state == 0
    assert factory.pin(5).state == 0
    leds.show("none", False)
    assert all(factory.pin(p).state == 0 for p in (17, 27, 22))
    leds.close()


def test_one_led_per_emotion(factory):
    leds = Leds(emotion_pins={"happy": 6, "angry": 13}, pin_factory=factory)
    leds.show("happy", True)
    assert factory.pin(6).state == 1 and factory.pin(13).state == 0
    leds.show("angry", True)
    assert factory.pin(6).state == 0 and factory.pin(13).state == 1
    leds.close()


def test_every_label_has_a_colour():
    assert set(COLOURS) >= {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "none"}
