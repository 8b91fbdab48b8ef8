"""Settings come from arguments or ``TRYGG_CENTER_*`` variables, validated."""

from __future__ import annotations

import pytest

from response_center.settings import CenterSettings, SettingsError


def test_settings_from_the_environment() -> None:
    env = {
        "TRYGG_CENTER_STATE_DIR": "/srv/centre",
        "TRYGG_CENTER_HEARTBEAT_INTERVAL_S": "30",
        "TRYGG_CENTER_DATABASE_URL": "postgresql://u@db/trygg",
    }
    settings = CenterSettings.from_env(env)
    assert settings.heartbeat_interval_s == 30
    assert settings.offline_after_s == 90
    assert settings.database_url == "postgresql+psycopg://u@db/trygg"


def test_defaults_put_everything_in_the_state_dir() -> None:
    settings = CenterSettings.from_env({}, state_dir="/tmp/x")
    assert settings.database_url == "sqlite:////tmp/x/center.sqlite"
    assert str(settings.receipt_key_file) == "/tmp/x/receipt_key.pem"
    assert (
        CenterSettings.from_env({"TRYGG_CENTER_STATE_DIR": "/a"}, state_dir="/b").state_dir.name
        == "b"
    )


def test_bad_values_are_refused_clearly() -> None:
    with pytest.raises(SettingsError, match="heartbeat_interval_s"):
        CenterSettings.from_env({"TRYGG_CENTER_HEARTBEAT_INTERVAL_S": "often"})
    with pytest.raises(SettingsError, match=r"unknown_field"):
        CenterSettings.from_env({}, unknown_field=1)
