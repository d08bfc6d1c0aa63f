"""The typed config (`config.toml`), validated once at start.

Every problem is reported with its TOML key, all at once (`ConfigError`). Secrets are never in
the file: the config names the environment variable that holds each token.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from funnelsync.connectors.hubspot_settings import HUBSPOT_HIGHEST_BURST_PER_10S, HubSpotSettings
from funnelsync.connectors.moesif.settings import MoesifSource
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.rules import columns_read
from funnelsync.settings import _internal_name, _Strict

PROPERTY_TYPES = ("number", "string", "bool", "date", "datetime", "enumeration")
PropertyType = Literal["number", "string", "bool", "date", "datetime", "enumeration"]

Source = Annotated[SqlSource | MoesifSource, Field(discriminator="kind")]


class StateSettings(_Strict):
    url: str = "sqlite:///funnelsync-state.db"
    retention_days: int = Field(default=30, ge=1)  # run history and finished journal entries


class DaemonSettings(_Strict):
    schedule: str = "*/15 * * * *"
    http: str = "127.0.0.1:9108"
    standby_poll_seconds: float = Field(default=10.0, gt=0)  # how often a standby tries to take over
    # after SIGTERM, how long a run may take to stop before the process exits (Kubernetes kills at 30 s)
    stop_grace_seconds: float = Field(default=20.0, gt=0)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a 5-field cron expression: {exc}") from None
        return value

    @field_validator("http")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0]

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])


class Sequence(_Strict):
    id: str  # HubSpot ids, given as integers or strings of digits
    sender_email: str
    user_id: str

    @field_validator("id", "user_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not text.isdigit():
            raise ValueError(f"{_toml_value(value).removeprefix('the string ')} is not a HubSpot id "
                             "(an integer, or a string of digits)")
        return text


class Enroll(_Strict):
    workflow_id: int | None = Field(default=None, gt=0)
    list: str | None = Field(default=None, min_length=1, max_length=250)
    sequence: Sequence | None = None

    @model_validator(mode="after")
    def _names_a_target(self) -> Enroll:
        if self.workflow_id is None and self.list is None and self.sequence is None:
            raise ValueError("`enroll` names none of workflow_id, list, sequence: name one, or leave "
                             "`enroll` out to let the property trigger a workflow")
        return self


class PropertyMapping(_Strict):
    column: str = Field(min_length=1)
    name: str
    label: str = Field(min_length=1)
    type: PropertyType
    options: list[str] | None = None
    description: str = ""

    _check_name = field_validator("name")(_internal_name)

    @model_validator(mode="after")
    def _options_for_enumerations(self) -> PropertyMapping:
        if self.type == "enumeration" and not self.options:
            raise ValueError("an enumeration needs `options`, the values HubSpot will accept")
        if self.type != "enumeration" and self.options is not None:
            raise ValueError(f"`options` only applies to type = \"enumeration\", not {self.type!r}")
        return self


class Stage(_Strict):
    value: str = Field(min_length=1, max_length=100)
    label: str = Field(min_length=1)
    above: float | None = None
    enroll: Enroll | None = None


class Funnel(_Strict):
    metric: str = Field(min_length=1)
    property: str = "api_integration_stage"
    label: str = "API integration stage"
    demote_after_days: int | None = Field(default=None, ge=1)
    signup_column: str | None = None  # gives the time to first hello world / working app
    stages: list[Stage] = Field(min_length=1)

    _check_property = field_validator("property")(_internal_name)

    @model_validator(mode="after")
    def _stages_in_funnel_order(self) -> Funnel:
        first, *rest = self.stages
        if first.above is not None:
            raise ValueError("the first stage is where every contact starts: leave out its `above`")
        bounds = []
        for position, stage in enumerate(rest, start=2):
            if stage.above is None:
                raise ValueError(f"stage {position} ({stage.value!r}) needs an `above` bound")
            bounds.append(stage.above)
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("the `above` bounds must rise strictly, in funnel order")
        values = [s.value for s in self.stages]
        if len(set(values)) != len(values):
            raise ValueError("stage values must be unique")
        return self


class Segment(_Strict):
    name: str
    label: str = Field(min_length=1)
    when: str = Field(min_length=1)
    enroll: Enroll | None = None
    property: str | None = None

    _check_name = field_validator("name")(_internal_name)
    _check_property = field_validator("property")(lambda v: v if v is None else _internal_name(v))

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str) -> str:
        columns_read(value)
        return value


class Config(_Strict):
    source: Source
    hubspot: HubSpotSettings = HubSpotSettings()
    state: StateSettings = StateSettings()
    daemon: DaemonSettings = DaemonSettings()
    properties: list[PropertyMapping] = Field(default_factory=list)
    funnel: Funnel | None = None
    segments: list[Segment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, str] = {}
        segments = [(f"segments[{i}].name", s.name) for i, s in enumerate(self.segments)]
        for key, name in segments:
            if name in seen:
                raise ValueError(f"{key}: segment {name!r} is named twice")
            seen[name] = key
        seen = {}
        names = [(f"properties[{i}].name", p.name) for i, p in enumerate(self.properties)]
        if self.funnel:
            names.append(("funnel.property", self.funnel.property))
        names += [(f"segments[{i}].property", s.property) for i, s in enumerate(self.segments) if s.property]
        for key, name in names:
            if name in seen:
                raise ValueError(f"{key}: property {name!r} is already written by {seen[name]}")
            seen[name] = key
        return self

    def warnings(self) -> list[ConfigProblem]:
        """What is allowed but probably not meant: `validate` prints these, a sync logs them."""
        found = []
        rate = self.hubspot.requests_per_10s
        if self.hubspot.is_hubspots and rate > HUBSPOT_HIGHEST_BURST_PER_10S:
            found.append(ConfigProblem(
                "hubspot.requests_per_10s",
                f"{rate} is above HubSpot's highest published burst limit ({HUBSPOT_HIGHEST_BURST_PER_10S} "
                "requests a 10 s; 100 on Free/Starter, 190 on Professional/Enterprise): HubSpot will answer "
                "429, which funnelsync waits out, slowing the sync and the portal's other integrations",
            ))
        return found

    def columns_used(self) -> dict[str, str]:
        """Source column -> the first TOML key that names it."""
        used: dict[str, str] = {}
        for i, prop in enumerate(self.properties):
            used.setdefault(prop.column, f"properties[{i}].column")
        if self.funnel:
            used.setdefault(self.funnel.metric, "funnel.metric")
            if self.funnel.signup_column:
                used.setdefault(self.funnel.signup_column, "funnel.signup_column")
        for i, segment in enumerate(self.segments):
            for column in sorted(columns_read(segment.when)):
                used.setdefault(column, f"segments[{i}].when")
        return used


def _toml_key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part in ("sql", "moesif") and key == "source":
            continue  # the discriminated union's branch name is not a TOML key
        else:
            key += f".{part}" if key else str(part)
    return key or "config"


# What a strict type asks for, by pydantic's error type, in TOML's words.
_WANTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string in quotes",
    "list_type": "an array",
}


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _wrong_type(error_type: str, value: object) -> str | None:
    """`a number, not the string '90'`: what the key needs and what it was given."""
    wanted = _WANTED.get(error_type)
    if wanted is None:
        return None
    quoted = isinstance(value, str) and error_type in ("int_type", "float_type", "bool_type")
    hint = ": leave out the quotes" if quoted else ""
    return f"{wanted}, not {_toml_value(value)}{hint}"


def _problems(exc: ValidationError) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        wrong_type = _wrong_type(error["type"], error.get("input"))
        if wrong_type is not None:
            message = wrong_type
        elif error["type"] == "extra_forbidden":
            message = "is not a known setting (check its spelling)"
        elif error["type"] == "missing":
            message = "is required"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = 'must be "sql" or "moesif"'
        key = _toml_key(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            key += ".kind"
        named = re.match(r"^([A-Za-z_][\w.\[\]]*(?:\[\d+\])?[\w.]*): (.+)$", message, re.DOTALL)
        if key == "config" and named:  # a check across sections names its own key
            key, message = named.groups()
        problems.append(ConfigProblem(key, message))
    return problems


def parse_config(data: Mapping[str, Any], *, path: str | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), path=path) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no config file at {location}: pass -c PATH or set FUNNELSYNC_CONFIG", path=str(location)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {location}: {exc.strerror}", path=str(location)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(location)) from None
    _paths_beside(data, Path(os.path.abspath(location)).parent)
    from_environment = _environment_overrides(data)
    try:
        return parse_config(data, path=str(location))
    except ConfigError as exc:
        raise ConfigError([_naming_the_variable(problem, from_environment) for problem in exc.problems],
                          path=str(location)) from None


# Settings that differ between environments (a laptop, staging, a pod): when set, the variable
# wins over the file. A relative SQLite path in one is taken from the working directory.
ENVIRONMENT_OVERRIDES = {
    "FUNNELSYNC_STATE_URL": ("state", "url"),
    "FUNNELSYNC_SOURCE_URL": ("source", "url"),
    "FUNNELSYNC_HTTP": ("daemon", "http"),
}


def _environment_overrides(data: dict[str, Any]) -> dict[str, str]:
    """Put the environment's settings into `data`; returns TOML key -> the variable it came from."""
    applied = {}
    for variable, (section, key) in ENVIRONMENT_OVERRIDES.items():
        value = os.environ.get(variable, "").strip()
        if value:
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = value
                applied[f"{section}.{key}"] = variable
    return applied


def _naming_the_variable(problem: ConfigProblem, from_environment: Mapping[str, str]) -> ConfigProblem:
    variable = from_environment.get(problem.key)
    return ConfigProblem(f"{problem.key} (from ${variable})", problem.message) if variable else problem


def _paths_beside(data: dict[str, Any], folder: Path) -> None:
    """Take the file's relative SQLite paths from `folder` (the config file's), so that what it
    names does not change with the directory funnelsync is started from."""
    state = data.setdefault("state", {})
    if isinstance(state, dict):
        state["url"] = _sqlite_beside(str(state.get("url", StateSettings().url)), folder)
    source = data.get("source")
    if isinstance(source, dict) and source.get("kind") == "sql" and isinstance(source.get("url"), str):
        source["url"] = _sqlite_beside(source["url"], folder)


def _sqlite_beside(url_text: str, folder: Path) -> str:
    try:
        url = make_url(url_text)
    except ArgumentError:
        return url_text  # reported where the URL is opened
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:")
            or Path(database).is_absolute()):
        return url_text
    return url.set(database=str(folder / database)).render_as_string(hide_password=False)


def read_token(env_name: str, toml_key: str) -> str:
    """The secret named by a `token_env` setting. Never logged, never put in an error."""
    token = os.environ.get(env_name, "").strip()
    if not token:
        raise ConfigError(
            [ConfigProblem(toml_key, f"the environment variable {env_name} is not set or is empty")]
        )
    return token
