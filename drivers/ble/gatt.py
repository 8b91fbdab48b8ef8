"""GATT services and characteristics of the health profiles (standards.md §3.2)."""

from __future__ import annotations

from dataclasses import dataclass

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid128(uuid16: int) -> str:
    """The 128-bit form of a 16-bit SIG UUID, as bleak and Bumble name attributes."""
    if not 0 <= uuid16 <= 0xFFFF:
        raise ValueError("not a 16-bit UUID")
    return f"0000{uuid16:04x}{BASE_UUID_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Characteristic:
    """A characteristic's SIG name and 16-bit UUID: what parse errors and logs name."""

    uuid16: int
    name: str

    @property
    def uuid(self) -> str:
        return uuid128(self.uuid16)

    def __str__(self) -> str:
        return f"{self.name} 0x{self.uuid16:04X}"


BLOOD_PRESSURE_SERVICE = 0x1810
HEALTH_THERMOMETER_SERVICE = 0x1809
WEIGHT_SCALE_SERVICE = 0x181D
GLUCOSE_SERVICE = 0x1808
PULSE_OXIMETER_SERVICE = 0x1822
BATTERY_SERVICE = 0x180F
CURRENT_TIME_SERVICE = 0x1805
DEVICE_INFORMATION_SERVICE = 0x180A

BLOOD_PRESSURE_MEASUREMENT = Characteristic(0x2A35, "Blood Pressure Measurement")
INTERMEDIATE_CUFF_PRESSURE = Characteristic(0x2A36, "Intermediate Cuff Pressure")
TEMPERATURE_MEASUREMENT = Characteristic(0x2A1C, "Temperature Measurement")
TEMPERATURE_TYPE = Characteristic(0x2A1D, "Temperature Type")
WEIGHT_MEASUREMENT = Characteristic(0x2A9D, "Weight Measurement")
WEIGHT_SCALE_FEATURE = Characteristic(0x2A9E, "Weight Scale Feature")
GLUCOSE_MEASUREMENT = Characteristic(0x2A18, "Glucose Measurement")
GLUCOSE_MEASUREMENT_CONTEXT = Characteristic(0x2A34, "Glucose Measurement Context")
RECORD_ACCESS_CONTROL_POINT = Characteristic(0x2A52, "Record Access Control Point")
PLX_SPOT_CHECK_MEASUREMENT = Characteristic(0x2A5E, "PLX Spot-Check Measurement")
PLX_CONTINUOUS_MEASUREMENT = Characteristic(0x2A5F, "PLX Continuous Measurement")
PLX_FEATURES = Characteristic(0x2A60, "PLX Features")
DATE_TIME = Characteristic(0x2A08, "Date Time")
CURRENT_TIME = Characteristic(0x2A2B, "Current Time")
BATTERY_LEVEL = Characteristic(0x2A19, "Battery Level")
