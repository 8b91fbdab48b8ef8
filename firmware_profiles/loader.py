"""Load the shipped device profiles and a site's own, which override them by id.

A broken shipped profile is a release bug and stops the load (a test loads them all). A
broken site-local file is logged and skipped: one bad file dropped in by an installer must
not take the whole home's alarms down with it.

Every problem names the file, the line and the field (``zigbee/x.yaml:31: events[0].to:
Input should be a valid boolean``): the YAML is composed into nodes first, so a pydantic
error location can be walked back to the line it came from. Duplicate keys (which plain
YAML loading silently resolves to the last one) and aliases are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from firmware_profiles.schema import Profile

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "zigbee"
MAX_PROFILE_BYTES = 256 * 1024
MAX_PROBLEMS = 20
"""Problems listed per file; the rest are counted."""


@dataclass(frozen=True, slots=True)
class ProfileProblem:
    """One thing wrong in a profile file, located for the person who has to fix it."""

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.field}: {self.message}"


class ProfileError(RuntimeError):
    """A profile file that cannot be read or does not validate."""

    def __init__(self, message: str, problems: Sequence[ProfileProblem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


def _fail(source: str, line: int | None, field: str, message: str) -> ProfileError:
    problem = ProfileProblem(source, line, field, message)
    return ProfileError(str(problem), [problem])


def parse_profile_text(text: str, source: str) -> Profile:
    """Validate one profile's YAML text (pure); ``source`` names it in errors."""
    root = _compose(text, source)
    loader = yaml.SafeLoader("")
    try:
        raw: Any = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _fail(source, _mark_line(exc), "(yaml)", _yaml_problem(exc)) from exc
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise _fail(source, _line(root), "(profile)", "a profile must be a YAML mapping")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(source, root, error) for error in exc.errors()]
        shown = problems[:MAX_PROBLEMS]
        message = "\n".join(str(p) for p in shown)
        if len(problems) > len(shown):
            message += f"\n{source}: and {len(problems) - len(shown)} more problems"
        raise ProfileError(message, shown) from exc


def load_profile_file(path: Path) -> Profile:
    """Read and validate one YAML profile file."""
    try:
        if path.stat().st_size > MAX_PROFILE_BYTES:
            raise _fail(str(path), None, "(file)", f"larger than {MAX_PROFILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(str(path), None, "(file)", f"cannot read: {exc}") from exc
    return parse_profile_text(text, str(path))


def _compose(text: str, source: str) -> Node:
    try:
        root: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _fail(source, _mark_line(exc), "(yaml)", _yaml_problem(exc)) from exc
    if root is None:
        raise _fail(source, None, "(profile)", "the file is empty")
    _check_nodes(root, source)
    return root


def _check_nodes(root: Node, source: str) -> None:
    """Refuse duplicate mapping keys and aliases (a node reached twice)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise _fail(source, _line(node), "(yaml)", "aliases are not allowed in a profile")
        seen.add(id(node))
        if isinstance(node, MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    if key.value in keys:
                        raise _fail(source, _line(key), key.value, "key given twice")
                    keys.add(key.value)
                stack += [key, value]
        elif isinstance(node, SequenceNode):
            stack += node.value


def _problem(source: str, root: Node, error: Any) -> ProfileProblem:
    """Map one pydantic error to the YAML line of the deepest node its location reaches."""
    node, line, path = root, _line(root), ""
    loc = tuple(error.get("loc", ()))
    unmatched: object = None
    for part in loc:
        child = _child(node, part)
        if child is None:
            # A union tag (``edge``), or a field the file does not have.
            unmatched = part
            continue
        node, line, unmatched = child, _line(child), None
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    if error.get("type") in ("missing", "extra_forbidden") and isinstance(unmatched, str):
        path += f".{unmatched}" if path else unmatched
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return ProfileProblem(source, line, path or "(profile)", message)


def _child(node: Node, part: object) -> Node | None:
    child: Node | None = None
    if isinstance(node, MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == part:
                child = value
                break
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        child = node.value[part]
    return child


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _mark_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return None if mark is None else int(mark.line) + 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else "not valid YAML"


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
