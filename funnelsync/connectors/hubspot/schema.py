"""Making sure the property group and every property funnelsync writes exist in HubSpot."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import structlog

from funnelsync.connectors.crm import PropertyProvisioning, SchemaReport
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.schema import PropertySpec

log = structlog.get_logger("funnelsync.hubspot")
Property = dict[str, Any]  # a contact property as HubSpot describes it


def _options(values: Sequence[tuple[str, str]], start: int = 0) -> list[dict[str, Any]]:
    return [{"label": label, "value": value, "displayOrder": start + order, "hidden": False}
            for order, (value, label) in enumerate(values)]


def _read_only_value(current: Property) -> bool:
    """HubSpot sets this property's value itself (hs_object_id, createdate...): a batch that
    writes it is refused whole."""
    return bool((current.get("modificationMetadata") or {}).get("readOnlyValue"))


def _name_key(spec: PropertySpec) -> str:
    """The TOML key that names the property, for a spec asked for by `spec.config_key`."""
    if spec.config_key.startswith("properties["):
        return f"{spec.config_key}.name"
    if spec.config_key.startswith("segments[") or spec.config_key == "funnel":
        return f"{spec.config_key}.property"
    return spec.config_key


def _read_only_problem(spec: PropertySpec, current: Property) -> ConfigProblem:
    return ConfigProblem(
        _name_key(spec),
        f"HubSpot does not let API writes change the contact property {spec.name!r} (label "
        f"{current.get('label')!r}): it is read-only, set by HubSpot itself. Choose another `name`",
    )


class PropertyProvisioner(PropertyProvisioning):
    def __init__(self, api: HubSpotApi) -> None:
        self.api = api
        self.path = api.paths.properties

    def check_access(self) -> None:
        # Reading the properties needs crm.schemas.contacts.read; a batch read of no contact
        # would be free of effects but HubSpot refuses an empty batch, so read one page of one.
        self._existing_properties()
        self.api.request("reading contacts", "GET", self.api.paths.contacts, params={"limit": 1})

    def ensure_properties(self, specs: Sequence[PropertySpec], *, dry_run: bool = False) -> SchemaReport:
        report = SchemaReport()
        group = self.api.settings.property_group
        existing = self._existing_properties()
        self._refuse_conflicts(specs, existing)
        if not dry_run:
            self._ensure_group(group)
        changes: list[Callable[[], None]] = []
        for spec in specs:
            current = existing.get(spec.name)
            if current is None:
                report.created.append(spec.name)
                changes.append(functools.partial(self._create, spec, group))
                continue
            missing = self._missing_options(spec, current)
            if missing:
                report.options_added[spec.name] = [value for value, _ in missing]
                changes.append(functools.partial(self._add_options, spec, current, missing))
            else:
                report.unchanged.append(spec.name)
        if not dry_run:
            self._make_together(changes)
        return report

    def _make_together(self, changes: Sequence[Callable[[], None]]) -> None:
        """Each property's change is its own call and none depends on another, so they go in
        flight together as the budget allows: one at a time, the set-up of a first sync took
        15 s at HubSpot's 800 ms. The first failure is raised once all have ended."""
        width = min(len(changes), self.api.requests_wanted_in_flight())
        if width <= 1:
            for change in changes:
                change()
            return
        with ThreadPoolExecutor(width, thread_name_prefix="funnelsync-properties") as workers:
            # the run's metrics and log context go along
            made = [workers.submit(contextvars.copy_context().run, change) for change in changes]
        for future in made:
            future.result()

    def _existing_properties(self) -> dict[str, Property]:
        data, _ = self.api.request("reading contact properties", "GET", self.path)
        return {str(prop["name"]): prop for prop in data.get("results") or []}

    def _refuse_conflicts(self, specs: Sequence[PropertySpec], existing: dict[str, Property]) -> None:
        problems = []
        for spec in specs:
            current = existing.get(spec.name)
            if current is not None and _read_only_value(current):
                problems.append(_read_only_problem(spec, current))
            elif current is not None and current.get("type") != spec.type:
                problems.append(
                    ConfigProblem(
                        spec.config_key,
                        f"HubSpot already has a contact property {spec.name!r} of type "
                        f"{current.get('type')!r} (label {current.get('label')!r}); this config writes it as "
                        f"{spec.type!r}. Choose another `name`, or a `type` that matches",
                    )
                )
        if problems:
            raise ConfigError(problems)

    def _ensure_group(self, group: str) -> None:
        _, status = self.api.request("reading the property group", "GET", f"{self.path}/groups/{quote(group)}",
                                     allow=(404,))
        if status == 404:
            body = {"name": group, "label": self.api.settings.property_group_label, "displayOrder": -1}
            self.api.request("creating the property group", "POST", f"{self.path}/groups", json=body, allow=(409,))
            log.info("property group created", group=group)

    def _create(self, spec: PropertySpec, group: str) -> None:
        body: dict[str, Any] = {"name": spec.name, "label": spec.label, "type": spec.type,
                                "fieldType": spec.field_type, "groupName": group, "description": spec.description}
        if spec.options:
            body["options"] = _options([(o.value, o.label) for o in spec.options])
        self.api.request(f"creating property {spec.name}", "POST", self.path, json=body, allow=(409,))
        log.info("property created", property=spec.name, type=spec.type)

    @staticmethod
    def _missing_options(spec: PropertySpec, current: Property) -> list[tuple[str, str]]:
        if spec.type != "enumeration":
            return []
        have = {option.get("value") for option in current.get("options") or []}
        return [(o.value, o.label) for o in spec.options if o.value not in have]

    def _add_options(self, spec: PropertySpec, current: Property, missing: list[tuple[str, str]]) -> None:
        kept = [{"label": option.get("label"), "value": option.get("value"),
                 "displayOrder": int(option.get("displayOrder") or 0), "hidden": bool(option.get("hidden"))}
                for option in current.get("options") or []]
        start = max((o["displayOrder"] for o in kept), default=-1) + 1
        body = {"options": kept + _options(missing, start)}
        self.api.request(f"adding options to {spec.name}", "PATCH", f"{self.path}/{quote(spec.name)}", json=body)
        log.info("property options added", property=spec.name, options=[v for v, _ in missing])
