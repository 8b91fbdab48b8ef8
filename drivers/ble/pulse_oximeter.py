"""PLX Spot-Check 0x2A5E, PLX Continuous 0x2A5F and PLX Features 0x2A60 (§3.4.5).

SpO2 and pulse rate are SFLOATs; the flags announce the optional timestamp (spot-check),
the fast and slow averages (continuous), the measurement status, the device and sensor
status and the pulse amplitude index. PLX Features says which of those the oximeter can
send at all, and its own layout depends on its bits (the two support masks follow only
when announced). Given the features, a decoder also refuses a frame carrying a field the
device said it does not support: that frame is not from the device we think it is.

Status bits are kept as sent; :attr:`quality` folds them into the shared flags. Reserved
status bits are kept and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from drivers.ble._frame import (
    FieldError,
    Frame,
    check_flags,
    check_length,
    first_byte,
    pack_u16,
    pack_u24,
    u16,
    u24,
)
from drivers.ble.date_time import DATE_TIME_SIZE, DeviceTime, date_time_at, pack_date_time
from drivers.ble.errors import BleParseError
from drivers.ble.gatt import (
    PLX_CONTINUOUS_MEASUREMENT,
    PLX_FEATURES,
    PLX_SPOT_CHECK_MEASUREMENT,
)
from drivers.ble.ieee11073 import Value, pack_sfloat, sfloat_at
from drivers.ble.quality import QualityFlag


class PulseOximeterParseError(BleParseError):
    """A PLX Spot-Check, Continuous or Features frame that cannot be used."""


class PlxMeasurementStatus(IntFlag):
    """Measurement status (uint16); bits 0-4 are reserved."""

    MEASUREMENT_ONGOING = 1 << 5
    EARLY_ESTIMATED_DATA = 1 << 6
    VALIDATED_DATA = 1 << 7
    FULLY_QUALIFIED_DATA = 1 << 8
    DATA_FROM_STORAGE = 1 << 9
    DATA_FOR_DEMONSTRATION = 1 << 10
    DATA_FOR_TESTING = 1 << 11
    CALIBRATION_ONGOING = 1 << 12
    MEASUREMENT_UNAVAILABLE = 1 << 13
    QUESTIONABLE_MEASUREMENT = 1 << 14
    INVALID_MEASUREMENT = 1 << 15


class PlxDeviceStatus(IntFlag):
    """Device and sensor status (uint24); bits 16-23 are reserved."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 1 << 0
    EQUIPMENT_MALFUNCTION = 1 << 1
    SIGNAL_PROCESSING_IRREGULARITY = 1 << 2
    INADEQUATE_SIGNAL = 1 << 3
    POOR_SIGNAL = 1 << 4
    LOW_PERFUSION = 1 << 5
    ERRATIC_SIGNAL = 1 << 6
    NON_PULSATILE_SIGNAL = 1 << 7
    QUESTIONABLE_PULSE = 1 << 8
    SIGNAL_ANALYSIS_ONGOING = 1 << 9
    SENSOR_INTERFERENCE = 1 << 10
    SENSOR_UNCONNECTED_TO_USER = 1 << 11
    UNKNOWN_SENSOR_CONNECTED = 1 << 12
    SENSOR_DISPLACED = 1 << 13
    SENSOR_MALFUNCTIONING = 1 << 14
    SENSOR_DISCONNECTED = 1 << 15


class PlxSupportedFeatures(IntFlag):
    MEASUREMENT_STATUS = 1 << 0
    DEVICE_SENSOR_STATUS = 1 << 1
    SPOT_CHECK_STORAGE = 1 << 2
    SPOT_CHECK_TIMESTAMP = 1 << 3
    SPO2PR_FAST = 1 << 4
    SPO2PR_SLOW = 1 << 5
    PULSE_AMPLITUDE_INDEX = 1 << 6
    MULTIPLE_BONDS = 1 << 7


_MEASUREMENT_QUALITY = (
    (PlxMeasurementStatus.MEASUREMENT_ONGOING, QualityFlag.EARLY_ESTIMATE),
    (PlxMeasurementStatus.EARLY_ESTIMATED_DATA, QualityFlag.EARLY_ESTIMATE),
    (PlxMeasurementStatus.DATA_FOR_DEMONSTRATION, QualityFlag.DEMO_DATA),
    (PlxMeasurementStatus.DATA_FOR_TESTING, QualityFlag.TEST_DATA),
    (PlxMeasurementStatus.CALIBRATION_ONGOING, QualityFlag.CALIBRATING),
    (PlxMeasurementStatus.MEASUREMENT_UNAVAILABLE, QualityFlag.INVALID),
    (PlxMeasurementStatus.QUESTIONABLE_MEASUREMENT, QualityFlag.QUESTIONABLE),
    (PlxMeasurementStatus.INVALID_MEASUREMENT, QualityFlag.INVALID),
)
_DEVICE_QUALITY = (
    (PlxDeviceStatus.EQUIPMENT_MALFUNCTION, QualityFlag.SENSOR_FAULT),
    (PlxDeviceStatus.SIGNAL_PROCESSING_IRREGULARITY, QualityFlag.QUESTIONABLE),
    (PlxDeviceStatus.INADEQUATE_SIGNAL, QualityFlag.WEAK_SIGNAL),
    (PlxDeviceStatus.POOR_SIGNAL, QualityFlag.WEAK_SIGNAL),
    (PlxDeviceStatus.LOW_PERFUSION, QualityFlag.LOW_PERFUSION),
    (PlxDeviceStatus.ERRATIC_SIGNAL, QualityFlag.QUESTIONABLE),
    (PlxDeviceStatus.NON_PULSATILE_SIGNAL, QualityFlag.WEAK_SIGNAL),
    (PlxDeviceStatus.QUESTIONABLE_PULSE, QualityFlag.QUESTIONABLE),
    (PlxDeviceStatus.SIGNAL_ANALYSIS_ONGOING, QualityFlag.EARLY_ESTIMATE),
    (PlxDeviceStatus.SENSOR_INTERFERENCE, QualityFlag.QUESTIONABLE),
    (PlxDeviceStatus.SENSOR_UNCONNECTED_TO_USER, QualityFlag.SENSOR_OFF),
    (PlxDeviceStatus.UNKNOWN_SENSOR_CONNECTED, QualityFlag.SENSOR_FAULT),
    (PlxDeviceStatus.SENSOR_DISPLACED, QualityFlag.SENSOR_OFF),
    (PlxDeviceStatus.SENSOR_MALFUNCTIONING, QualityFlag.SENSOR_FAULT),
    (PlxDeviceStatus.SENSOR_DISCONNECTED, QualityFlag.SENSOR_OFF),
)
"""Extended display update, validated, fully qualified and stored data say nothing bad."""


def _status_quality(
    measurement: PlxMeasurementStatus | None, device: PlxDeviceStatus | None
) -> set[QualityFlag]:
    flags: set[QualityFlag] = set()
    if measurement:
        flags.update(quality for bit, quality in _MEASUREMENT_QUALITY if measurement & bit)
    if device:
        flags.update(quality for bit, quality in _DEVICE_QUALITY if device & bit)
    return flags


# --- PLX Features 0x2A60 -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    supported: PlxSupportedFeatures
    measurement_status_support: PlxMeasurementStatus | None = None
    """Which measurement status bits the device can set; present with MEASUREMENT_STATUS."""
    device_status_support: PlxDeviceStatus | None = None
    """Which device and sensor status bits it can set; present with DEVICE_SENSOR_STATUS."""


_FEATURES_DEFINED = 0xFF


def decode_plx_features(data: Frame) -> PlxFeatures:
    """PLX Features 0x2A60: uint16 features, then the support masks they announce."""
    try:
        if len(data) < 2:
            raise FieldError(f"truncated: {len(data)} bytes, at least 2 needed")
        raw = u16(data, 0)
        if raw & ~_FEATURES_DEFINED:
            raise FieldError(f"supported features 0x{raw:04X} set reserved bits")
        has_measurement = bool(raw & PlxSupportedFeatures.MEASUREMENT_STATUS)
        has_device = bool(raw & PlxSupportedFeatures.DEVICE_SENSOR_STATUS)
        expected = 2 + (2 if has_measurement else 0) + (3 if has_device else 0)
        if len(data) != expected:
            word = "truncated" if len(data) < expected else "over-long"
            raise FieldError(f"{word}: {len(data)} bytes, features 0x{raw:04X} announce {expected}")
        offset = 2
        measurement = device = None
        if has_measurement:
            measurement = PlxMeasurementStatus(u16(data, offset))
            offset += 2
        if has_device:
            device = PlxDeviceStatus(u24(data, offset))
    except FieldError as exc:
        raise PulseOximeterParseError(PLX_FEATURES, exc.reason) from None
    return PlxFeatures(PlxSupportedFeatures(raw), measurement, device)


def encode_plx_features(features: PlxFeatures) -> bytes:
    supported = features.supported
    has_measurement = bool(supported & PlxSupportedFeatures.MEASUREMENT_STATUS)
    has_device = bool(supported & PlxSupportedFeatures.DEVICE_SENSOR_STATUS)
    if has_measurement != (features.measurement_status_support is not None) or has_device != (
        features.device_status_support is not None
    ):
        raise ValueError("support masks must match the supported features")
    out = pack_u16(int(supported))
    if features.measurement_status_support is not None:
        out += pack_u16(int(features.measurement_status_support))
    if features.device_status_support is not None:
        out += pack_u24(int(features.device_status_support))
    return out


_Needs = tuple[tuple[int, PlxSupportedFeatures, str], ...]
"""(flag bit, the feature it needs, what the field is called)."""


def _check_supported(features: PlxFeatures | None, flags: int, needs: _Needs) -> None:
    if features is None:
        return
    for bit, feature, name in needs:
        if flags & bit and not features.supported & feature:
            raise FieldError(f"carries {name}, which the device's PLX Features leave out")


# --- PLX Spot-Check Measurement 0x2A5E ------------------------------------------------------

_SC_TIMESTAMP = 0x01
_SC_MEASUREMENT_STATUS = 0x02
_SC_DEVICE_STATUS = 0x04
_SC_PAI = 0x08
_SC_CLOCK_NOT_SET = 0x10
_SC_DEFINED = 0x1F


def _spot_check_size(flags: int) -> int:
    return (
        5
        + (DATE_TIME_SIZE if flags & _SC_TIMESTAMP else 0)
        + (2 if flags & _SC_MEASUREMENT_STATUS else 0)
        + (3 if flags & _SC_DEVICE_STATUS else 0)
        + (2 if flags & _SC_PAI else 0)
    )


_SC_SIZES = tuple(_spot_check_size(flags) for flags in range(_SC_DEFINED + 1))
_SC_NEEDS: _Needs = (
    (_SC_TIMESTAMP, PlxSupportedFeatures.SPOT_CHECK_TIMESTAMP, "a timestamp"),
    (_SC_MEASUREMENT_STATUS, PlxSupportedFeatures.MEASUREMENT_STATUS, "a measurement status"),
    (_SC_DEVICE_STATUS, PlxSupportedFeatures.DEVICE_SENSOR_STATUS, "a device and sensor status"),
    (_SC_PAI, PlxSupportedFeatures.PULSE_AMPLITUDE_INDEX, "a pulse amplitude index"),
)


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    spo2: Value
    """Percent."""
    pulse_rate: Value
    """Beats per minute."""
    timestamp: DeviceTime | None = None
    measurement_status: PlxMeasurementStatus | None = None
    device_status: PlxDeviceStatus | None = None
    pulse_amplitude_index: Value | None = None
    """Percent."""
    clock_not_set: bool = False
    """Flag bit 4: the device's clock was never set, so its timestamp is not a real time."""

    @property
    def quality(self) -> frozenset[QualityFlag]:
        flags = _status_quality(self.measurement_status, self.device_status)
        if self.clock_not_set and self.timestamp is not None:
            flags.add(QualityFlag.CLOCK_FAULT)
        return frozenset(flags)


def decode_plx_spot_check(data: Frame, features: PlxFeatures | None = None) -> PlxSpotCheck:
    """PLX Spot-Check Measurement 0x2A5E, checked against ``features`` when known."""
    try:
        flags = first_byte(data)
        check_flags(flags, _SC_DEFINED)
        check_length(data, _SC_SIZES[flags], flags)
        _check_supported(features, flags, _SC_NEEDS)
        offset = 5
        timestamp = measurement = device = pai = None
        if flags & _SC_TIMESTAMP:
            timestamp = date_time_at(data, offset)
            offset += DATE_TIME_SIZE
        if flags & _SC_MEASUREMENT_STATUS:
            measurement = PlxMeasurementStatus(u16(data, offset))
            offset += 2
        if flags & _SC_DEVICE_STATUS:
            device = PlxDeviceStatus(u24(data, offset))
            offset += 3
        if flags & _SC_PAI:
            pai = sfloat_at(data, offset)
    except FieldError as exc:
        raise PulseOximeterParseError(PLX_SPOT_CHECK_MEASUREMENT, exc.reason) from None
    return PlxSpotCheck(
        spo2=sfloat_at(data, 1),
        pulse_rate=sfloat_at(data, 3),
        timestamp=timestamp,
        measurement_status=measurement,
        device_status=device,
        pulse_amplitude_index=pai,
        clock_not_set=bool(flags & _SC_CLOCK_NOT_SET),
    )


def encode_plx_spot_check(m: PlxSpotCheck) -> bytes:
    """The indication an oximeter would send for ``m``."""
    flags = _SC_CLOCK_NOT_SET if m.clock_not_set else 0
    tail = b""
    if m.timestamp is not None:
        flags |= _SC_TIMESTAMP
        tail += pack_date_time(m.timestamp)
    if m.measurement_status is not None:
        flags |= _SC_MEASUREMENT_STATUS
        tail += pack_u16(int(m.measurement_status))
    if m.device_status is not None:
        flags |= _SC_DEVICE_STATUS
        tail += pack_u24(int(m.device_status))
    if m.pulse_amplitude_index is not None:
        flags |= _SC_PAI
        tail += pack_sfloat(m.pulse_amplitude_index)
    return bytes((flags,)) + pack_sfloat(m.spo2) + pack_sfloat(m.pulse_rate) + tail


# --- PLX Continuous Measurement 0x2A5F ------------------------------------------------------

_CT_FAST = 0x01
_CT_SLOW = 0x02
_CT_MEASUREMENT_STATUS = 0x04
_CT_DEVICE_STATUS = 0x08
_CT_PAI = 0x10
_CT_DEFINED = 0x1F


def _continuous_size(flags: int) -> int:
    return (
        5
        + (4 if flags & _CT_FAST else 0)
        + (4 if flags & _CT_SLOW else 0)
        + (2 if flags & _CT_MEASUREMENT_STATUS else 0)
        + (3 if flags & _CT_DEVICE_STATUS else 0)
        + (2 if flags & _CT_PAI else 0)
    )


_CT_SIZES = tuple(_continuous_size(flags) for flags in range(_CT_DEFINED + 1))
_CT_NEEDS: _Needs = (
    (_CT_FAST, PlxSupportedFeatures.SPO2PR_FAST, "SpO2PR-Fast"),
    (_CT_SLOW, PlxSupportedFeatures.SPO2PR_SLOW, "SpO2PR-Slow"),
    (_CT_MEASUREMENT_STATUS, PlxSupportedFeatures.MEASUREMENT_STATUS, "a measurement status"),
    (_CT_DEVICE_STATUS, PlxSupportedFeatures.DEVICE_SENSOR_STATUS, "a device and sensor status"),
    (_CT_PAI, PlxSupportedFeatures.PULSE_AMPLITUDE_INDEX, "a pulse amplitude index"),
)


@dataclass(frozen=True, slots=True)
class SpO2PulseRate:
    spo2: Value
    pulse_rate: Value


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    """A continuous reading: no timestamp, so the driver stamps it on receipt."""

    normal: SpO2PulseRate
    fast: SpO2PulseRate | None = None
    slow: SpO2PulseRate | None = None
    measurement_status: PlxMeasurementStatus | None = None
    device_status: PlxDeviceStatus | None = None
    pulse_amplitude_index: Value | None = None

    @property
    def quality(self) -> frozenset[QualityFlag]:
        return frozenset(_status_quality(self.measurement_status, self.device_status))


def decode_plx_continuous(data: Frame, features: PlxFeatures | None = None) -> PlxContinuous:
    """PLX Continuous Measurement 0x2A5F, checked against ``features`` when known."""
    try:
        flags = first_byte(data)
        check_flags(flags, _CT_DEFINED)
        check_length(data, _CT_SIZES[flags], flags)
        _check_supported(features, flags, _CT_NEEDS)
        offset = 5
        fast = slow = measurement = device = pai = None
        if flags & _CT_FAST:
            fast = SpO2PulseRate(sfloat_at(data, offset), sfloat_at(data, offset + 2))
            offset += 4
        if flags & _CT_SLOW:
            slow = SpO2PulseRate(sfloat_at(data, offset), sfloat_at(data, offset + 2))
            offset += 4
        if flags & _CT_MEASUREMENT_STATUS:
            measurement = PlxMeasurementStatus(u16(data, offset))
            offset += 2
        if flags & _CT_DEVICE_STATUS:
            device = PlxDeviceStatus(u24(data, offset))
            offset += 3
        if flags & _CT_PAI:
            pai = sfloat_at(data, offset)
    except FieldError as exc:
        raise PulseOximeterParseError(PLX_CONTINUOUS_MEASUREMENT, exc.reason) from None
    return PlxContinuous(
        normal=SpO2PulseRate(sfloat_at(data, 1), sfloat_at(data, 3)),
        fast=fast,
        slow=slow,
        measurement_status=measurement,
        device_status=device,
        pulse_amplitude_index=pai,
    )


def encode_plx_continuous(m: PlxContinuous) -> bytes:
    """The notification an oximeter would send for ``m``."""
    flags = 0
    tail = b""
    for bit, pair in ((_CT_FAST, m.fast), (_CT_SLOW, m.slow)):
        if pair is not None:
            flags |= bit
            tail += pack_sfloat(pair.spo2) + pack_sfloat(pair.pulse_rate)
    if m.measurement_status is not None:
        flags |= _CT_MEASUREMENT_STATUS
        tail += pack_u16(int(m.measurement_status))
    if m.device_status is not None:
        flags |= _CT_DEVICE_STATUS
        tail += pack_u24(int(m.device_status))
    if m.pulse_amplitude_index is not None:
        flags |= _CT_PAI
        tail += pack_sfloat(m.pulse_amplitude_index)
    normal = pack_sfloat(m.normal.spo2) + pack_sfloat(m.normal.pulse_rate)
    return bytes((flags,)) + normal + tail
