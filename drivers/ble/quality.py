"""Quality flags: the few things a nurse or a rule needs to know about a measurement.

Each characteristic has its own status bits (BP measurement status, PLX measurement
and device/sensor status, glucose sensor status annunciation). The decoders keep those
bits as they came; each measurement's ``quality`` property folds them into this small
shared vocabulary, which travels in event data and later drives events and trend views.
"""

from __future__ import annotations

from enum import StrEnum


class QualityFlag(StrEnum):
    BODY_MOVEMENT = "body_movement"
    CUFF_LOOSE = "cuff_loose"
    IRREGULAR_PULSE = "irregular_pulse"
    PULSE_ABOVE_RANGE = "pulse_above_range"
    """The BP monitor found the pulse rate above its upper limit."""
    PULSE_BELOW_RANGE = "pulse_below_range"
    IMPROPER_POSITION = "improper_position"
    QUESTIONABLE = "questionable"
    """The device doubts the value: irregular or erratic signal, interference, temperature."""
    INVALID = "invalid"
    """The device says the value is invalid or unavailable: a failed strip, a pulled strip."""
    EARLY_ESTIMATE = "early_estimate"
    """Measured while the device was still settling: ongoing or early-estimate data."""
    DEMO_DATA = "demo_data"
    TEST_DATA = "test_data"
    CALIBRATING = "calibrating"
    SENSOR_FAULT = "sensor_fault"
    SENSOR_OFF = "sensor_off"
    """The sensor was not on the person: unconnected, displaced or disconnected."""
    WEAK_SIGNAL = "weak_signal"
    LOW_PERFUSION = "low_perfusion"
    ABOVE_DEVICE_RANGE = "above_device_range"
    """The true value is higher than the device can measure (a meter's "HI")."""
    BELOW_DEVICE_RANGE = "below_device_range"
    CONTROL_SOLUTION = "control_solution"
    """A glucose meter check with control solution: not the person's blood."""
    CLOCK_FAULT = "clock_fault"
    """The device's clock is not set or faulty, so its timestamp is not to be trusted."""


def sorted_flags(flags: frozenset[QualityFlag]) -> list[str]:
    """The flags as a stable, sorted list of strings, as event data carries them."""
    return sorted(flag.value for flag in flags)
