"""The profile schema: what it refuses, fingerprints, firmware ranges, the JSON Schema file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from firmware_profiles.loader import SHIPPED_DIR
from firmware_profiles.schema import (
    SCHEMA_PATH,
    Fingerprint,
    FirmwareRange,
    Profile,
    Supervision,
    json_schema_text,
    main,
    version_key,
)

REPO = Path(__file__).resolve().parents[2]


def base(name: str = "aqara_mccgq11lm.yaml") -> dict[str, Any]:
    raw = yaml.safe_load((SHIPPED_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def edge(**fields: Any) -> dict[str, Any]:
    rule = {"kind": "edge", "property": "contact", "to": False, "type": "activity.a"}
    return {**rule, "class": "activity", **fields}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "NoDot"}, "vendor.MODEL"),
        ({"transport": "ble"}, "transport"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"category": "toaster"}, "category"),
        ({"events": [edge(type="alarm.door")]}, "does not belong to class"),
        ({"events": [edge(vkp_alert_code="9.9")]}, "vkp-alert-code"),
        ({"events": [edge(vkp_alert_code="4.27")]}, "vkp-alert-code"),
        ({"events": [edge(), edge()]}, "two edge rules"),
        ({"events": [edge(property="Contact")]}, "lower-case"),
        (
            {"events": [{"kind": "action", "property": "action", "values": [], "type": "alarm.b"}]},
            "values",
        ),
        ({"events": [{"kind": "toggle", "property": "action", "type": "alarm.button"}]}, "kind"),
        ({"events": [edge(property="trigger_count")]}, "needs a binary reading, not numeric"),
        (
            {
                "events": [
                    {
                        "kind": "enum",
                        "property": "contact",
                        "values": ["x"],
                        "type": "activity.x",
                        "class": "activity",
                    }
                ]
            },
            "needs an enum or text reading, not binary",
        ),
        ({"readings": [*base()["readings"], {"property": "contact", "kind": "binary"}]}, "twice"),
        ({"power_source": "mains"}, "a mains device has no battery"),
        (
            {"supervision": {"check_in_interval_s": 3600, "tamper_property": "trigger_count"}},
            "binary",
        ),
        ({"supervision": {"check_in_interval_s": 5}}, "greater than or equal to 10"),
        ({"supervision": {"check_in_interval_s": 60, "offline_after_intervals": 1}}, "1.5"),
        ({"fingerprint": {"model": "M", "vendor": "V", "model_id": []}}, "model_id"),
    ],
)
def test_schema_refusals(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Profile.model_validate({**base(), **change})


def stove(**rule: Any) -> dict[str, Any]:
    raw = base("tuya_ts011f_plug_1.yaml")
    threshold = {**raw["events"][0], **rule}
    return {**raw, "events": [threshold, *raw["events"][1:]]}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"clear_below": 150}, "clear_below must not be above"),
        ({"above": 4000}, "can never be crossed"),
        ({"clear_below": 0}, "can never be reached"),
        ({"clear_type": "alarm.stove_off"}, "clear_type does not belong"),
        ({"clear_type": None, "clear_vkp_alert_code": "4.11"}, "without clear_type"),
        ({"above": "1e400"}, "finite number"),
        ({"above": "nan"}, "finite number"),
        ({"type": "alarm.stove_on", "class": "alarm"}, "cleared by an operator"),
    ],
)
def test_threshold_refusals(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Profile.model_validate(stove(**rule))


def test_rules_must_agree_with_their_readings() -> None:
    radar = base("tuya_mir_he200_ty_fall.yaml")
    fall = {**radar["events"][0], "values": ["fall", "crashed"]}
    with pytest.raises(ValidationError, match=r"never has: \['crashed'\]"):
        Profile.model_validate({**radar, "events": [fall]})
    overlap = {**radar["events"][1], "values": ["maybe_fall", "fall"]}
    with pytest.raises(ValidationError, match=r"value\(s\) \['fall'\] listed twice"):
        Profile.model_validate({**radar, "events": [radar["events"][0], overlap]})
    presence = {**radar["events"][0], "property": "presence"}
    with pytest.raises(ValidationError, match="needs an enum or text reading"):
        Profile.model_validate({**radar, "events": [presence]})


def test_priority_defaults_to_the_class_priority() -> None:
    (rule,) = Profile.model_validate({**base(), "events": [edge()]}).events
    assert rule.effective_priority == 6


def test_supervision_offline_after_and_reporting() -> None:
    supervision = Supervision(check_in_interval_s=3600)
    assert supervision.offline_after == timedelta(hours=2, minutes=30)
    assert (supervision.offline_priority, supervision.linkquality_poor_below) == (3, 20)
    assert supervision.liveness == "reports"
    request = {
        "cluster": "genPowerCfg",
        "attribute": "batteryPercentageRemaining",
        "minimum_report_interval": 600,
        "maximum_report_interval": 7200,
    }
    with pytest.raises(ValidationError, match="cannot meet the check-in interval"):
        Supervision.model_validate({"check_in_interval_s": 3600, "reporting": [request]})
    with pytest.raises(ValidationError, match="minimum_report_interval is above"):
        Supervision.model_validate(
            {
                "check_in_interval_s": 9000,
                "reporting": [{**request, "minimum_report_interval": 8000}],
            }
        )


# --- fingerprints ------------------------------------------------------------------------------


RADAR = Fingerprint(
    model="MIR-HE200-TY_fall",
    vendor="Tuya",
    vendor_aliases=("TuYa",),
    model_id=("TS0601",),
    manufacturer=("_TZE200_lu01t0zl",),
)


@pytest.mark.parametrize(
    ("entry", "matches"),
    [
        ({"model": "MIR-HE200-TY_fall", "vendor": "Tuya"}, True),
        ({"model": "MIR-HE200-TY_fall", "vendor": "TuYa"}, True),  # Z2M 1.x spelling
        ({"model": "MIR-HE200-TY_fall", "vendor": " tuya "}, True),
        ({"model": "MIR-HE200-TY_fall", "vendor": None}, True),
        ({"model": "MIR-HE200-TY_fall", "vendor": "Acme"}, False),
        ({"model": "MIR-HE200-TY", "vendor": "Tuya"}, False),  # the radar without fall
        # a definition decides even when model_id and manufacturer would fit
        (
            {"model": "TS0601_thermostat", "vendor": "Tuya", "manufacturer": "_TZE200_lu01t0zl"},
            False,
        ),
        ({"model": None, "manufacturer": "_TZE200_lu01t0zl"}, True),
        ({"model": None, "manufacturer": "_TZE200_other"}, False),
        ({"model": None, "manufacturer": None}, False),
        ({"model": None, "model_id": None}, False),
    ],
)
def test_fingerprint_matching(entry: dict[str, Any], matches: bool) -> None:
    arguments = {"vendor": None, "model_id": "TS0601", "manufacturer": None, **entry}
    assert RADAR.matches(**arguments) is matches


def test_a_fingerprint_without_manufacturer_names_takes_any() -> None:
    leak = Fingerprint.model_validate(
        {"model": "SJCGQ11LM", "vendor": "Aqara", "model_id": "lumi.sensor_wleak.aq1"}
    )
    assert leak.model_id == ("lumi.sensor_wleak.aq1",)
    assert leak.matches(model=None, vendor=None, model_id="lumi.sensor_wleak.aq1")


# --- firmware ranges ---------------------------------------------------------------------------


def test_version_keys_compare_numbers_as_numbers() -> None:
    newer, older = version_key("0.0.0_0025"), version_key("0.0.0_0009")
    assert newer is not None and older is not None and newer > older
    later, earlier = version_key("20180130"), version_key("20161129")
    assert later is not None and earlier is not None and later > earlier
    assert version_key("2019.10.24") == version_key("2019-10-24")
    assert version_key("  ") is None and version_key(None) is None and version_key("--") is None


@pytest.mark.parametrize(
    ("build", "date", "verdict"),
    [
        ("1.0.7", "20200101", "inside"),
        ("1.0.10", "20200101", "inside"),
        ("1.0.2", "20200101", "outside"),
        ("2.0.0", "20200101", "outside"),
        ("1.0.7", "20161129", "outside"),
        (None, "20200101", "unknown"),
        ("1.0.7", "", "unknown"),
    ],
)
def test_firmware_range(build: str | None, date: str | None, verdict: str) -> None:
    supported = FirmwareRange(
        min_software_build_id="1.0.5", max_software_build_id="1.9", min_date_code="20180101"
    )
    assert supported.check(software_build_id=build, date_code=date) == verdict
    assert FirmwareRange().check(software_build_id=None, date_code=None) == "inside"


def test_firmware_range_refusals() -> None:
    with pytest.raises(ValidationError, match="is empty"):
        FirmwareRange(min_date_code="20200101", max_date_code="20190101")
    with pytest.raises(ValidationError, match="no digits or letters"):
        FirmwareRange(min_software_build_id="--")


# --- the JSON Schema for editors ---------------------------------------------------------------


def test_the_committed_json_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text(), (
        "run: python -m firmware_profiles.schema"
    )
    schema = json.loads(json_schema_text())
    assert schema["additionalProperties"] is False
    assert {"fingerprint", "supervision", "readings", "events"} <= set(schema["properties"])


def test_the_entry_point_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "profile.schema.json"
    assert main(["--check", "--output", str(target)]) == 1
    assert main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == json_schema_text()
    assert main(["--check", "--output", str(target)]) == 0
    target.write_text("{}\n")
    assert main(["--check", "--output", str(target)]) == 1


def test_python_dash_m_runs_the_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "firmware_profiles.schema", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stderr
