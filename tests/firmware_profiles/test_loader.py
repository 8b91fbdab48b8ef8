"""Profile files: every shipped one validates, and a site's own override them by id."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from firmware_profiles.loader import SHIPPED_DIR, ProfileError, load_profile_file, load_profiles
from firmware_profiles.schema import ActionRule, EdgeRule, Profile


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_profile_validates(path: Path) -> None:
    profile = load_profile_file(path)
    assert profile.transport == "zigbee2mqtt"
    assert profile.events, "a shipped profile must raise something"


def test_shipped_profiles_by_id() -> None:
    profiles = load_profiles()
    button, door = profiles["aqara.WXKG11LM"], profiles["aqara.MCCGQ11LM"]
    (press,) = button.events
    assert isinstance(press, ActionRule)
    assert press.values == {"single", "double", "hold"}
    assert door.edge_properties == {"contact"}
    assert {(r.to, r.type) for r in door.events if isinstance(r, EdgeRule)} == {
        (False, "activity.door_opened"),
        (True, "activity.door_closed"),
    }
    assert door.fingerprint.model_id == ("lumi.sensor_magnet.aq2",)
    assert "lumi.sensor_switch.aq2" in button.fingerprint.model_id


def shipped_raw(name: str) -> dict[str, object]:
    raw = yaml.safe_load((SHIPPED_DIR / name).read_text())
    assert isinstance(raw, dict)
    return raw


def test_a_site_profile_overrides_the_shipped_one(tmp_path: Path) -> None:
    raw = shipped_raw("aqara_wxkg11lm.yaml")
    raw["events"] = [{**raw["events"][0], "values": ["single", "double", "hold", "triple"]}]  # type: ignore[index]
    (tmp_path / "button.yaml").write_text(yaml.safe_dump(raw))
    profiles = load_profiles(tmp_path)
    (press,) = profiles["aqara.WXKG11LM"].events
    assert isinstance(press, ActionRule)
    assert "triple" in press.values
    assert "aqara.MCCGQ11LM" in profiles


def test_a_site_profile_adds_a_new_model(tmp_path: Path) -> None:
    raw = shipped_raw("aqara_mccgq11lm.yaml")
    raw["id"] = "sonoff.SNZB04"
    (tmp_path / "sonoff.yaml").write_text(yaml.safe_dump(raw))
    assert {"sonoff.SNZB04", "aqara.MCCGQ11LM", "aqara.WXKG11LM"} <= set(load_profiles(tmp_path))


def test_a_broken_site_file_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    (tmp_path / "invalid.yaml").write_text(yaml.safe_dump({"id": "x.Y", "vendor": "x"}))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with caplog.at_level(logging.ERROR):
        profiles = load_profiles(tmp_path)
    assert set(profiles) == set(load_profiles())
    skipped = [r.getMessage() for r in caplog.records if "site profile skipped" in r.getMessage()]
    assert len(skipped) == 3


def test_a_missing_site_directory_keeps_the_shipped_profiles(tmp_path: Path) -> None:
    assert set(load_profiles(tmp_path / "nowhere")) == set(load_profiles())


def test_load_profile_file_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("vendor: x\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml"):
        load_profile_file(path)


def base() -> dict[str, object]:
    return shipped_raw("aqara_mccgq11lm.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "NoDot"}, "vendor.MODEL"),
        ({"transport": "ble"}, "transport"),
        ({"unknown_key": 1}, "unknown_key"),
        (
            {
                "events": [
                    {
                        "kind": "edge",
                        "property": "contact",
                        "to": False,
                        "type": "alarm.door",
                        "class": "activity",
                    }
                ]
            },
            "does not belong to class",
        ),
        (
            {
                "events": [
                    {
                        "kind": "edge",
                        "property": "contact",
                        "to": False,
                        "type": "activity.x",
                        "class": "activity",
                        "vkp_alert_code": "9.9",
                    }
                ]
            },
            "vkp-alert-code",
        ),
        (
            {
                "events": [
                    {
                        "kind": "edge",
                        "property": "contact",
                        "to": False,
                        "type": "activity.a",
                        "class": "activity",
                    }
                ]
                * 2
            },
            "two edge rules",
        ),
        (
            {
                "events": [
                    {
                        "kind": "action",
                        "property": "action",
                        "values": [],
                        "type": "alarm.button",
                        "class": "alarm",
                    }
                ]
            },
            "values",
        ),
        (
            {
                "events": [
                    {
                        "kind": "toggle",
                        "property": "action",
                        "type": "alarm.button",
                        "class": "alarm",
                    }
                ]
            },
            "kind",
        ),
    ],
)
def test_schema_refusals(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Profile.model_validate({**base(), **change})


def test_priority_defaults_to_the_class_priority() -> None:
    raw = base()
    raw["events"] = [
        {
            "kind": "edge",
            "property": "contact",
            "to": False,
            "type": "activity.a",
            "class": "activity",
        }
    ]
    (rule,) = Profile.model_validate(raw).events
    assert rule.effective_priority == 6
