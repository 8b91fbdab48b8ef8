"""Every characteristic decoder, by 16-bit UUID, with the parse error it raises.

The driver looks a notification's decoder up here; tests fuzz every entry and the
benchmark times each one. Decoders that can also check against a feature
characteristic (PLX) are listed with their default: no features known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from drivers.ble import gatt
from drivers.ble._frame import Frame
from drivers.ble.battery import BatteryParseError, decode_battery_level
from drivers.ble.blood_pressure import (
    BloodPressureParseError,
    decode_blood_pressure,
    decode_intermediate_cuff_pressure,
)
from drivers.ble.date_time import DateTimeParseError, decode_current_time, decode_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.glucose import GlucoseParseError, decode_glucose, decode_glucose_context
from drivers.ble.pulse_oximeter import (
    PulseOximeterParseError,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
)
from drivers.ble.racp import RacpParseError, decode_racp_response
from drivers.ble.temperature import (
    TemperatureParseError,
    decode_temperature,
    decode_temperature_type,
)
from drivers.ble.weight import WeightParseError, decode_weight, decode_weight_scale_feature


@dataclass(frozen=True, slots=True)
class Decoder:
    characteristic: gatt.Characteristic
    decode: Callable[[Frame], object]
    error: type[BleParseError]
    """The only exception ``decode`` raises."""


DECODERS: Mapping[int, Decoder] = MappingProxyType(
    {
        d.characteristic.uuid16: d
        for d in (
            Decoder(
                gatt.BLOOD_PRESSURE_MEASUREMENT, decode_blood_pressure, BloodPressureParseError
            ),
            Decoder(
                gatt.INTERMEDIATE_CUFF_PRESSURE,
                decode_intermediate_cuff_pressure,
                BloodPressureParseError,
            ),
            Decoder(gatt.TEMPERATURE_MEASUREMENT, decode_temperature, TemperatureParseError),
            Decoder(gatt.TEMPERATURE_TYPE, decode_temperature_type, TemperatureParseError),
            Decoder(gatt.WEIGHT_MEASUREMENT, decode_weight, WeightParseError),
            Decoder(gatt.WEIGHT_SCALE_FEATURE, decode_weight_scale_feature, WeightParseError),
            Decoder(gatt.GLUCOSE_MEASUREMENT, decode_glucose, GlucoseParseError),
            Decoder(gatt.GLUCOSE_MEASUREMENT_CONTEXT, decode_glucose_context, GlucoseParseError),
            Decoder(gatt.RECORD_ACCESS_CONTROL_POINT, decode_racp_response, RacpParseError),
            Decoder(
                gatt.PLX_SPOT_CHECK_MEASUREMENT, decode_plx_spot_check, PulseOximeterParseError
            ),
            Decoder(
                gatt.PLX_CONTINUOUS_MEASUREMENT, decode_plx_continuous, PulseOximeterParseError
            ),
            Decoder(gatt.PLX_FEATURES, decode_plx_features, PulseOximeterParseError),
            Decoder(gatt.DATE_TIME, decode_date_time, DateTimeParseError),
            Decoder(gatt.CURRENT_TIME, decode_current_time, DateTimeParseError),
            Decoder(gatt.BATTERY_LEVEL, decode_battery_level, BatteryParseError),
        )
    }
)
