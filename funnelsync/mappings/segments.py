"""Behavioural segments: which `[[segments]]` a contact's row puts it in."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from funnelsync.config import Config, Segment
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.rules import Rule, RuleError, compile_rule


@dataclass(frozen=True)
class CompiledSegment:
    segment: Segment
    rule: Rule


def compile_segments(config: Config, columns: Collection[str]) -> list[CompiledSegment]:
    """Every segment's rule against the source's columns; all problems at once, by key."""
    compiled, problems = [], []
    for i, segment in enumerate(config.segments):
        try:
            compiled.append(CompiledSegment(segment, compile_rule(segment.when, columns)))
        except RuleError as error:
            problems.append(ConfigProblem(f"segments[{i}].when", f"segment {segment.name!r}: {error}"))
    if problems:
        raise ConfigError(problems)
    return compiled


def segments_of(row: Mapping[str, Any], segments: list[CompiledSegment], now: datetime) -> frozenset[str]:
    return frozenset(s.segment.name for s in segments if s.rule.matches(row, now))


def segment_properties(segments: list[CompiledSegment], members_of: frozenset[str]) -> dict[str, str]:
    return {
        s.segment.property: "true" if s.segment.name in members_of else "false"
        for s in segments if s.segment.property
    }
