"""Load the shipped device profiles and a site's own, which override them by id.

A broken shipped profile is a release bug and stops the load (a test loads them all). A
broken site-local file is logged and skipped: one bad file dropped in by an installer must
not take the whole home's alarms down with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from firmware_profiles.schema import Profile

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "zigbee"
MAX_PROFILE_BYTES = 256 * 1024


class ProfileError(RuntimeError):
    """A profile file that cannot be read or does not validate."""


def load_profile_file(path: Path) -> Profile:
    """Read and validate one YAML profile file."""
    try:
        if path.stat().st_size > MAX_PROFILE_BYTES:
            raise ProfileError(f"{path}: larger than {MAX_PROFILE_BYTES} bytes")
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {exc}") from exc


def _profile_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.is_file())


def load_profiles(extra_dir: Path | None = None) -> dict[str, Profile]:
    """All profiles by id: the shipped ones, then ``extra_dir/*.yaml`` replacing by id."""
    profiles: dict[str, Profile] = {}
    for path in _profile_files(SHIPPED_DIR):
        profile = load_profile_file(path)
        if profile.id in profiles:
            raise ProfileError(f"{path}: profile id {profile.id} is shipped twice")
        profiles[profile.id] = profile
    if extra_dir is None:
        return profiles
    if not extra_dir.is_dir():
        log.warning("site profile directory %s does not exist; using shipped profiles", extra_dir)
        return profiles
    site_ids: set[str] = set()
    for path in _profile_files(extra_dir):
        try:
            profile = load_profile_file(path)
        except ProfileError as exc:
            log.error("site profile skipped: %s", exc)
            continue
        if profile.id in site_ids:
            log.warning("site profile %s defined again in %s; it wins", profile.id, path)
        elif profile.id in profiles:
            log.info("site profile %s from %s overrides the shipped one", profile.id, path)
        site_ids.add(profile.id)
        profiles[profile.id] = profile
    return profiles
