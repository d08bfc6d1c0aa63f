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
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from funnelsync.connectors.hubspot_settings import (
    HUBSPOT_HIGHEST_BURST_PER_10S,
    LEGACY,
    V2_WORKFLOWS_END,
    HubSpotSettings,
)
from funnelsync.connectors.moesif.settings import MoesifSource
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.rules import columns_read
from funnelsync.settings import _env_name, _internal_name, _loopback, _Strict

PROPERTY_TYPES = ("number", "string", "bool", "date", "datetime", "enumeration")
PropertyType = Literal["number", "string", "bool", "date", "datetime", "enumeration"]

Source = Annotated[SqlSource | MoesifSource, Field(discriminator="kind")]


class StateSettings(_Strict):
    url: str = Field(default="sqlite:///funnelsync-state.db", description=(
        "funnelsync's own database, as a SQLAlchemy URL: SQLite (a relative path is taken from the config "
        "file's folder), or PostgreSQL for more than one daemon. A database that is not funnelsync's is refused."),
        examples=["postgresql+psycopg://funnelsync@state-db/funnelsync"])
    retention_days: int = Field(default=30, ge=1, description=(
        "How many days run history and finished journal entries are kept."))


class DaemonSettings(_Strict):
    schedule: str = Field(default="*/15 * * * *", description=(
        "When `funnelsync run` syncs: a 5-field cron expression, in UTC (it also syncs once at start)."))
    http: str = Field(default="127.0.0.1:9108", description=(
        "HOST:PORT the daemon serves /healthz, /readyz, /metrics and the status page on; 0.0.0.0:9108 in a "
        "container (the image sets FUNNELSYNC_HTTP)."))
    standby_poll_seconds: float = Field(default=10.0, gt=0, description=(
        "How often a standby daemon tries to take the state over from the active one."))
    # Kubernetes kills at 30 s (terminationGracePeriodSeconds) unless told otherwise
    stop_grace_seconds: float = Field(default=20.0, gt=0, description=(
        "After SIGTERM, how long the request in flight and the run may take to stop before the process "
        "exits; a container's grace before SIGKILL must be longer."))
    unready_after_failed_runs: int = Field(default=3, ge=1, description=(
        "/readyz fails once this many runs in a row failed; after one failed run the daemon is still ready "
        "and tries again."))

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


class AlertSettings(_Strict):
    # the webhook URL is a secret (Slack's carries its key in the path): only its variable is named here
    url_env: str = Field(default="FUNNELSYNC_ALERT_URL", description=(
        "The environment variable that holds the webhook URL (https://, or http:// to loopback); unset, "
        "alerts are off."))
    format: Literal["json", "slack"] = Field(default="json", description=(
        "What is posted: funnelsync's JSON (event, summary, details, at, host), or Slack's incoming-webhook "
        "message."))
    rejects_above: int = Field(default=100, ge=0, description=(
        "Alert when one run rejects more contacts than this."))
    repeat_every_minutes: int = Field(default=60, ge=0, description=(
        "While the runs keep failing (or keep rejecting more than `rejects_above`), tell `run_failed` (or "
        "`rejects_above_threshold`) again once this many minutes have passed since it was last told (the "
        "first run of a streak is always told); 0 tells it only once per streak."))
    timeout_seconds: float = Field(default=10.0, gt=0, description="How long each attempt to post may take.")
    attempts: int = Field(default=5, ge=1, le=20, description=(
        "Attempts to post an alert (a growing wait between them, at least the webhook's Retry-After) before "
        "it is given up."))

    _check_env = field_validator("url_env")(_env_name)


class Sequence(_Strict):
    id: str = Field(description="The sequence's HubSpot id: an integer, or a string of digits.", examples=[5550001])
    sender_email: str = Field(description=(
        "The email address the sequence is sent from: a connected inbox of the sending user."),
        examples=["devrel@example.com"])
    user_id: str = Field(description=(
        "The sending user's HubSpot id (a Sales Hub seat): an integer, or a string of digits."), examples=[7701])

    @field_validator("id", "user_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not text.isdigit():
            raise ValueError(f"{_toml_value(value).removeprefix('the string ')} is not a HubSpot id "
                             "(an integer, or a string of digits)")
        return text


class Enroll(_Strict):
    workflow_id: int | None = Field(default=None, gt=0, description=(
        "A legacy contact workflow to enroll into directly, once per entry (HubSpot's v2 workflow API, which "
        "it stops serving in September 2027)."), examples=[1234567])
    list: str | None = Field(default=None, min_length=1, max_length=250, description=(
        "A static list kept in step: the contact is added on entry and removed on exit; created if missing."),
        examples=["API funnel: production"])
    sequence: Sequence | None = Field(default=None, description=(
        "A Sales Hub sequence to enroll into, once per entry."),
        examples=[{"id": 5550001, "sender_email": "devrel@example.com", "user_id": 7701}])
    event: str | None = Field(default=None, max_length=50, description=(
        "A custom behavioural event (its internal name) sent once per entry, a workflow's trigger "
        "(Enterprise hubs); defined if missing."), examples=["entered_sandbox"])

    _check_event = field_validator("event")(_internal_name)

    @model_validator(mode="after")
    def _names_a_target(self) -> Enroll:
        if self.workflow_id is None and self.list is None and self.sequence is None and self.event is None:
            raise ValueError("`enroll` names none of workflow_id, list, sequence, event: name one, or leave "
                             "`enroll` out to let the property trigger a workflow")
        return self


class PropertyMapping(_Strict):
    column: str = Field(min_length=1, description="The source column whose value is written.",
                        examples=["used_event_count"])
    name: str = Field(description=(
        "The contact property's HubSpot internal name (lower-case letters, digits and underscores, starting "
        "with a letter); created if missing. One HubSpot sets itself (hs_object_id, createdate...) is refused."),
        examples=["used_event_count"])
    label: str = Field(min_length=1, description="The label HubSpot shows for the property.",
                       examples=["Used Event Count"])
    type: PropertyType = Field(description=(
        "How the value is written: a plain number, a string, true/false, a date (midnight UTC), a datetime "
        "(ISO 8601, UTC when it has no zone), or one of `options`."), examples=["number"])
    options: list[str] | None = Field(default=None, description=(
        "An enumeration's values (matched ignoring case); required for, and only for, type = \"enumeration\". "
        "Options are added to HubSpot's property, never removed."), examples=[["free", "growth", "enterprise"]])
    description: str = Field(default="", description="The property's description in HubSpot.",
                             examples=["API calls in the last day."])

    _check_name = field_validator("name")(_internal_name)

    @model_validator(mode="after")
    def _options_for_enumerations(self) -> PropertyMapping:
        if self.type == "enumeration" and not self.options:
            raise ValueError("an enumeration needs `options`, the values HubSpot will accept")
        if self.type != "enumeration" and self.options is not None:
            raise ValueError(f"`options` only applies to type = \"enumeration\", not {self.type!r}")
        return self


class Stage(_Strict):
    value: str = Field(min_length=1, max_length=100, description=(
        "The stage property's value for this stage (an option of the enumeration); unique."), examples=["middle"])
    label: str = Field(min_length=1, description="The option's label in HubSpot.", examples=["Integrated in sandbox"])
    above: float | None = Field(default=None, description=(
        "A contact is in the last stage whose bound its metric is above. Left out of the first stage (where "
        "every contact starts), required on the others, rising strictly."), examples=[0])
    enroll: Enroll | None = Field(default=None, description=(
        "Where entering the stage puts the contact, exactly once per entry; left out, the stage property is "
        "itself a workflow's trigger."), examples=[{"list": "API funnel: sandbox"}])


class Funnel(_Strict):
    metric: str = Field(min_length=1, description="The source column the stage bounds (`above`) are compared with.",
                        examples=["used_event_count"])
    property: str = Field(default="api_integration_stage", description=(
        "The enumeration property that holds the stage (a HubSpot internal name), created with the stages as "
        "its options; one <property>_<stage>_entered_at datetime property per stage too."))
    label: str = Field(default="API integration stage", description="The stage property's label in HubSpot.")
    demote_after_days: int | None = Field(default=None, ge=1, description=(
        "Move a contact back a stage only after this many days in a row below its stage's bound; left out, "
        "stages only move forward."), examples=[7])
    signup_column: str | None = Field(default=None, description=(
        "A date or time column of the signup: funnelsync then writes the days to the first API call "
        "(time_to_first_hello_world_days) and to production (time_to_first_working_app_days)."),
        examples=["signed_up_at"])
    stages: list[Stage] = Field(min_length=1, description="The stages, in funnel order.")

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
    name: str = Field(description="The segment's name (lower-case letters, digits and underscores); unique.",
                      examples=["stopped_sending_traffic"])
    label: str = Field(min_length=1, description="What the segment is, in people's words.",
                       examples=["Active before, no traffic for 7 days"])
    when: str = Field(min_length=1, description=(
        "A CEL rule over the row's columns, with `now` and days_since(ts); a missing value never matches."),
        examples=["used_event_count == 0 && days_since(last_event_at) >= 7"])
    enroll: Enroll | None = Field(default=None, description=(
        "Where entering the segment puts the contact, exactly once per entry; leaving it takes the contact "
        "off the segment's list."), examples=[{"list": "Re-engage: traffic stopped"}])
    property: str | None = Field(default=None, description=(
        "A yes/no contact property (a HubSpot internal name) that says whether the contact is in the segment."),
        examples=["api_traffic_stopped"])

    _check_name = field_validator("name")(_internal_name)
    _check_property = field_validator("property")(lambda v: v if v is None else _internal_name(v))

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str) -> str:
        columns_read(value)
        return value


class Config(_Strict):
    source: Source = Field(description="Where the usage comes from: a SQL query (kind = \"sql\") or Moesif.")
    hubspot: HubSpotSettings = Field(default=HubSpotSettings(), description=(
        "The HubSpot portal: its API, the token's variable, the request limits, the property group."))
    state: StateSettings = Field(default=StateSettings(), description=(
        "funnelsync's own database: what HubSpot confirmed, the journal, runs, rejects."))
    daemon: DaemonSettings = Field(default=DaemonSettings(), description=(
        "`funnelsync run`: its schedule, its HTTP port, standing by and stopping."))
    alerts: AlertSettings = Field(default=AlertSettings(), description="The daemon's alerts over a webhook.")
    properties: list[PropertyMapping] = Field(default_factory=list, description=(
        "Field mappings: one per source column written to a contact property."))
    funnel: Funnel | None = Field(default=None, description=(
        "The integration funnel: the stage property, its stages and their bounds."))
    segments: list[Segment] = Field(default_factory=list, description=(
        "Behavioural cohorts from the usage (CEL rules), kept in step in HubSpot."))

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
        if self.hubspot.api_version == LEGACY:
            found.append(ConfigProblem(
                "hubspot.api_version",
                "\"legacy\" calls HubSpot's numbered paths: the v4 ones (sequences) lose support on "
                "30 March 2027 and v1-v3 (contacts, properties, lists) in September 2027. Leave "
                "`api_version` out to use the newest date version",
            ))
        for where, enroll in self.enrollments():
            if enroll.workflow_id is not None:
                found.append(ConfigProblem(
                    f"{where}.enroll.workflow_id",
                    f"direct enrollment uses HubSpot's v2 workflow API, which HubSpot stops serving in "
                    f"{V2_WORKFLOWS_END}. Make the stage property the "
                    "workflow's enrollment trigger (no `enroll`), or use `list` or `event` (README: "
                    "Enrolling contacts)",
                ))
        return found

    def enrollments(self) -> list[tuple[str, Enroll]]:
        """(TOML key, enroll) for every stage and segment that enrolls."""
        found = [(f"funnel.stages[{i}]", stage.enroll)
                 for i, stage in enumerate(self.funnel.stages if self.funnel else []) if stage.enroll]
        return found + [(f"segments[{i}]", segment.enroll) for i, segment in enumerate(self.segments)
                        if segment.enroll]

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


def read_alert_url(settings: AlertSettings) -> str | None:
    """The webhook URL in the variable `[alerts].url_env` names, or None (alerts off) when it is
    unset. A secret like a token: never logged, never put in an error, not even a wrong one."""
    url = os.environ.get(settings.url_env, "").strip()
    if not url:
        return None
    problem = _webhook_url_problem(url)
    if problem is not None:
        raise ConfigError([ConfigProblem("alerts.url_env", f"${settings.url_env} {problem}")])
    return url


def _webhook_url_problem(text: str) -> str | None:
    """What is wrong with a webhook URL, in words that do not repeat it. The rule of an API's base
    URL (settings.py): TLS, unless to this machine. A query string is allowed: some webhooks
    carry their key there."""
    not_a_url = "does not hold an http(s) URL such as https://hooks.slack.com/services/..."
    try:
        url = urlsplit(text)
        url.port  # noqa: B018  (raises for a port that is not a number in range)
    except ValueError:
        return not_a_url
    if url.scheme not in ("http", "https") or not url.hostname or re.search(r"\s", text):
        return not_a_url
    if url.scheme == "http" and not _loopback(url.hostname):
        return ("holds a plain http:// URL to another machine: the alerts and the URL, a secret, would travel "
                "in clear text; use https:// (plain http:// only to a loopback address such as 127.0.0.1)")
    return None
