"""Discovery, pure: the recorded ``bridge/devices`` dump and bridge events judged by profile."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.mqtt.zigbee2mqtt import (
    BridgeDevice,
    BridgeEvent,
    parse_bridge_devices,
    parse_bridge_event,
)
from firmware_profiles.loader import load_profiles
from firmware_profiles.schema import FirmwareRange, Profile
from gateway.config import AllowedDevice
from gateway.discovery import AllowList, Plan, judge, match_profile, plan_devices, plan_event
from gateway.inventory import NetworkDevice

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PROFILES = load_profiles()
DUMP = Path(__file__).parents[1] / "firmware_profiles" / "payloads" / "bridge_devices.json"
"""The recorded dump: the eight kit devices, an unsupported Tuya and an Aqara weather sensor."""
LISTING = parse_bridge_devices(DUMP.read_bytes())
BY_NAME = {d.friendly_name: d for d in LISTING}

KIT = {
    "bedroom/button": "aqara.WXKG11LM",
    "hall/door": "aqara.MCCGQ11LM",
    "living/motion": "aqara.RTCGQ11LM",
    "bathroom/leak": "aqara.SJCGQ11LM",
    "kitchen/smoke": "heiman.HS1SA",
    "bedroom/bed": "aqara.DJT11LM",
    "bedroom/radar": "tuya.MIR-HE200-TY_fall",
    "kitchen/stove": "tuya.TS011F_plug_1",
}
UNSUPPORTED_IEEE = "0xa4c13899aabbccdd"
WEATHER_IEEE = "0x00158d0001e2f3a4"


def kit_allow_list(**changes: str) -> AllowList:
    """The kit, allow-listed by name and IEEE as the installer would; ``changes`` re-profile."""
    return AllowList(
        [
            AllowedDevice(friendly_name=name, ieee=BY_NAME[name].ieee, profile=changes.get(name, p))
            for name, p in KIT.items()
        ]
    )


def first_plan(allow: AllowList, listing: list[BridgeDevice] = LISTING) -> Plan:
    return plan_devices({}, listing, PROFILES, allow, NOW)


def rows_by_ieee(plan: Plan) -> dict[str, NetworkDevice]:
    return {row.ieee: row for row in plan.rows}


def test_the_recorded_kit_is_trusted_and_two_strangers_are_reported_once() -> None:
    plan = first_plan(kit_allow_list())
    rows = rows_by_ieee(plan)
    assert len(rows) == 10, "every member but the coordinator has a row"
    for name, profile in KIT.items():
        row = rows[BY_NAME[name].ieee]
        assert (row.status, row.match, row.profile) == ("trusted", "matched", profile), name
        assert row.allowed_name == name and row.reported is None
    unsupported, weather = rows[UNSUPPORTED_IEEE], rows[WEATHER_IEEE]
    assert (unsupported.status, unsupported.match) == ("unsupported", "unsupported")
    assert unsupported.reason == "Zigbee2MQTT does not support model id TS0601/_TZE204_unknown0"
    assert (weather.status, weather.match) == ("unknown", "no_profile")
    assert weather.reason == "not allow-listed; no Trygg profile for Aqara WSDCGQ11LM"
    assert [(r.type, r.device.ieee, r.allowed) for r in plan.reports] == [
        ("technical.unsupported_device", UNSUPPORTED_IEEE, None),
        ("technical.unknown_device", WEATHER_IEEE, None),
    ]
    assert weather.power_source == "Battery" and weather.date_code == "20161129"

    # Z2M republishes the same (retained) listing: nothing to write, nothing to report.
    again = plan_devices(rows, LISTING, PROFILES, kit_allow_list(), NOW + timedelta(hours=1))
    assert again == Plan([], [])


def test_a_kit_device_that_is_not_allow_listed_is_unknown_but_pairable() -> None:
    allow = AllowList([AllowedDevice(friendly_name="bedroom/button", profile="aqara.WXKG11LM")])
    rows = rows_by_ieee(first_plan(allow))
    smoke = rows[BY_NAME["kitchen/smoke"].ieee]
    assert (smoke.status, smoke.profile, smoke.reported) == (
        "unknown",
        "heiman.HS1SA",
        "technical.unknown_device",
    )
    assert smoke.reason == "not allow-listed; Heiman HS1SA is heiman.HS1SA and can be paired"
    # Allow-listed by name alone (no IEEE in the configuration) is enough.
    assert rows[BY_NAME["bedroom/button"].ieee].status == "trusted"


def test_an_allow_listed_device_that_is_another_model_is_reported_as_unsupported() -> None:
    allow = kit_allow_list(**{"hall/door": "aqara.WXKG11LM"})
    plan = first_plan(allow)
    door = rows_by_ieee(plan)[BY_NAME["hall/door"].ieee]
    assert (door.status, door.profile, door.allowed_profile) == (
        "mismatch",
        "aqara.MCCGQ11LM",
        "aqara.WXKG11LM",
    )
    assert door.reason == "allow-listed as aqara.WXKG11LM, but Aqara MCCGQ11LM is aqara.MCCGQ11LM"
    (report,) = [r for r in plan.reports if r.device.ieee == door.ieee]
    assert report.type == "technical.unsupported_device"
    assert report.allowed is not None and report.allowed.friendly_name == "hall/door"


def test_a_name_match_with_another_ieee_is_not_the_allow_listed_device() -> None:
    impostor = AllowedDevice(
        friendly_name="hall/door", ieee="0x0000000000000001", profile="aqara.MCCGQ11LM"
    )
    allow = AllowList([impostor])
    assert allow.find(BY_NAME["hall/door"].ieee, "hall/door") is None
    assert allow.find("0x0000000000000001", "renamed") is impostor
    rows = rows_by_ieee(first_plan(allow))
    assert rows[BY_NAME["hall/door"].ieee].status == "unknown"


def with_firmware(profile: Profile, **bounds: str) -> Profile:
    return profile.model_copy(update={"firmware": FirmwareRange(**bounds)})


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ({"min_date_code": "20150101", "max_date_code": "20191231"}, "matched"),
        ({"min_date_code": "20180101"}, "firmware_outside"),
        ({"min_software_build_id": "1.0"}, "matched"),  # not reported: unknown, not outside
    ],
)
def test_firmware_range_decides_between_matched_and_outside(
    bounds: dict[str, str], match: str
) -> None:
    profiles = {**PROFILES, "aqara.WXKG11LM": with_firmware(PROFILES["aqara.WXKG11LM"], **bounds)}
    button = BY_NAME["bedroom/button"]
    allowed = AllowedDevice(friendly_name="bedroom/button", profile="aqara.WXKG11LM")
    verdict = judge(button, profiles, allowed)
    assert verdict.match.kind == match
    if match == "firmware_outside":
        assert verdict.status == "unsupported"
        assert verdict.reason == (
            "allow-listed as aqara.WXKG11LM, but Aqara WXKG11LM firmware is outside the "
            "range verified for aqara.WXKG11LM"
        )
    else:
        assert verdict.status == "trusted"


def test_two_profiles_for_one_fingerprint_need_the_allow_list_to_choose() -> None:
    twin = PROFILES["aqara.WXKG11LM"].model_copy(update={"id": "site.WXKG11LM_panic"})
    profiles = {**PROFILES, twin.id: twin}
    button = BY_NAME["bedroom/button"]
    assert match_profile(button, profiles).kind == "ambiguous"
    chosen = match_profile(button, profiles, preferred="site.WXKG11LM_panic")
    assert (chosen.kind, chosen.profile) == ("matched", "site.WXKG11LM_panic")


def test_a_tuya_radar_is_told_apart_by_manufacturer_name_without_a_definition() -> None:
    radar = replace(BY_NAME["bedroom/radar"], model=None, vendor=None)
    assert match_profile(radar, PROFILES).kind == "unsupported"  # Z2M cannot run it
    listed = BY_NAME["bedroom/radar"]
    other = replace(listed, manufacturer="_TZE200_somethingelse")
    assert match_profile(listed, PROFILES).profile == "tuya.MIR-HE200-TY_fall"
    # With a definition Z2M has already matched it; the manufacturer no longer decides.
    assert match_profile(other, PROFILES).profile == "tuya.MIR-HE200-TY_fall"


def test_a_device_still_interviewing_waits_and_is_judged_when_done() -> None:
    weather = BY_NAME[WEATHER_IEEE]
    interviewing = replace(weather, interview_completed=False, interviewing=True)
    plan = first_plan(kit_allow_list(), [interviewing])
    (row,) = plan.rows
    assert (row.status, row.interview, plan.reports) == ("pending", "started", [])
    done = plan_devices(rows_by_ieee(plan), [weather], PROFILES, kit_allow_list(), NOW)
    (row,) = done.rows
    assert (row.status, row.interview) == ("unknown", "successful")
    assert [r.type for r in done.reports] == ["technical.unknown_device"]


def test_leaving_and_rejoining_reports_nothing_new() -> None:
    allow = kit_allow_list()
    first = rows_by_ieee(first_plan(allow))
    without = [d for d in LISTING if d.ieee != WEATHER_IEEE]
    left = plan_devices(first, without, PROFILES, allow, NOW)
    (row,) = left.rows
    assert (row.ieee, row.status, row.in_network, left.reports) == (
        WEATHER_IEEE,
        "left",
        False,
        [],
    )
    state = {**first, WEATHER_IEEE: row}
    back = plan_devices(state, LISTING, PROFILES, allow, NOW)
    (row,) = back.rows
    assert (row.status, row.in_network, back.reports) == ("unknown", True, [])


def test_a_device_paired_then_unpaired_is_reported_again() -> None:
    first = rows_by_ieee(first_plan(kit_allow_list()))
    paired = AllowList(
        [
            *kit_allow_list().devices,
            AllowedDevice(friendly_name="x", ieee=WEATHER_IEEE, profile="aqara.WXKG11LM"),
        ]
    )
    mismatch = plan_devices(first, LISTING, PROFILES, paired, NOW)
    (row,) = mismatch.rows
    assert (row.status, row.reason) == (
        "unsupported",
        "allow-listed as aqara.WXKG11LM, but no Trygg profile for Aqara WSDCGQ11LM",
    )
    assert [r.type for r in mismatch.reports] == ["technical.unsupported_device"]
    unpaired = plan_devices({**first, WEATHER_IEEE: row}, LISTING, PROFILES, kit_allow_list(), NOW)
    assert [r.type for r in unpaired.reports] == ["technical.unknown_device"]


def event(kind: str, ieee: str | None, status: str | None = None) -> BridgeEvent:
    return BridgeEvent(type=kind, friendly_name=ieee, ieee=ieee, status=status)


def test_bridge_events_join_interview_and_leave() -> None:
    allow = kit_allow_list()
    ieee = "0x00158d0009a1b2c3"
    joined = plan_event({}, event("device_joined", ieee), allow, NOW)
    (row,) = joined.rows
    assert (row.status, row.interview, row.in_network, joined.reports) == (
        "pending",
        "pending",
        True,
        [],
    )
    started = plan_event({ieee: row}, event("device_interview", ieee, "started"), allow, NOW)
    (row,) = started.rows
    assert row.interview == "started" and started.reports == []
    failed = plan_event({ieee: row}, event("device_interview", ieee, "failed"), allow, NOW)
    (row,) = failed.rows
    assert (row.status, row.interview, row.reason) == (
        "unsupported",
        "failed",
        "Zigbee2MQTT could not interview the device",
    )
    assert [r.type for r in failed.reports] == ["technical.unsupported_device"]
    # The listing that follows a failed interview keeps the verdict and reports nothing new.
    listed = BridgeDevice(
        ieee=ieee,
        friendly_name=ieee,
        type="EndDevice",
        model=None,
        vendor=None,
        model_id=None,
        power_source=None,
        supported=False,
        interview_completed=False,
    )
    relisted = plan_devices({ieee: row}, [listed], PROFILES, allow, NOW)
    assert relisted.reports == []
    assert all(r.status == "unsupported" for r in relisted.rows)
    gone = plan_event({ieee: row}, event("device_leave", ieee), allow, NOW)
    (row,) = gone.rows
    assert (row.status, row.in_network) == ("left", False)
    assert plan_event({}, event("device_joined", None), allow, NOW) == Plan([], [])
    assert plan_event({}, event("device_interview", ieee, "bogus"), allow, NOW) == Plan([], [])


def test_the_recorded_interview_event_parses_into_a_row() -> None:
    recorded = Path(__file__).parents[1] / "drivers" / "mqtt" / "payloads"
    parsed = parse_bridge_event((recorded / "bridge_event_interview.json").read_bytes())
    (row,) = plan_event({}, parsed, kit_allow_list(), NOW).rows
    assert (row.friendly_name, row.interview, row.allowed_name) == (
        "hall/door",
        "successful",
        "hall/door",
    )
