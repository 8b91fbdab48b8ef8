"""The allow-list entry: where a device is, as every event from it will say."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import AllowedDevice


def device(**fields: str) -> AllowedDevice:
    return AllowedDevice.model_validate(
        {"friendly_name": "bedroom/button", "profile": "aqara.WXKG11LM", **fields}
    )


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({}, None),
        ({"room": "bedroom"}, "bedroom"),
        ({"place": "Korttidsavdeling 2"}, "Korttidsavdeling 2"),
        ({"room": "rom 12", "place": "Korttidsavdeling 2"}, "rom 12 @ Korttidsavdeling 2"),
    ],
)
def test_location_follows_the_vkp_room_at_place_convention(
    fields: dict[str, str], location: str | None
) -> None:
    assert device(**fields).location == location


def test_a_location_too_long_for_an_event_is_refused_when_configured() -> None:
    with pytest.raises(ValidationError, match="room and place together"):
        device(room="r" * 64, place="p" * 100)
