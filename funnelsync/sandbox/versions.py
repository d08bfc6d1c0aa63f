"""HubSpot's API versions: the date versions (`2026-03`, `2026-09`) and the numbered "legacy" paths.

A version is read from the path alone (`/crm/objects/2026-09/...` is 2026-09, `/crm/v3/...` is
legacy), so the request log can record it for any request, even one no route serves.
"""

from __future__ import annotations

import re

LEGACY = "legacy"
V2026_03 = "2026-03"
V2026_09 = "2026-09"
# oldest first: a behaviour HubSpot brought in with a version holds for every later one
VERSIONS = (LEGACY, V2026_03, V2026_09)
DATED = (V2026_03, V2026_09)

DATE_SEGMENT = re.compile(r"^\d{4}-\d{2}(-beta)?$")
NUMBERED_SEGMENT = re.compile(r"^v\d+$")


def api_version(path: str) -> str | None:
    """The version a path calls: its date segment, "legacy" for a numbered one, else None."""
    segments = path.split("?", 1)[0].split("/")
    for segment in segments:
        if DATE_SEGMENT.match(segment):
            return segment
    if any(NUMBERED_SEGMENT.match(segment) for segment in segments):
        return LEGACY
    return None


def enforces(version: str, since: str) -> bool:
    """Whether a call under `version` gets a behaviour HubSpot brought in with `since`."""
    return VERSIONS.index(version) >= VERSIONS.index(since)


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"an API version is one of {', '.join(VERSIONS)}, not {version!r}")
    return version
