"""Making sure the property group and every property funnelsync writes exist in HubSpot."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate

from funnelsync.connectors.crm import PropertyProvisioning, SchemaReport
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.errors import ConfigError, ConfigProblem
from funnelsync.mappings.schema import PropertySpec

log = structlog.get_logger("funnelsync.hubspot")
OBJECT = "contacts"


def _option_inputs(values: Sequence[tuple[str, str]]) -> list[OptionInput]:
    return [
        OptionInput(label=label, value=value, display_order=order, hidden=False)
        for order, (value, label) in enumerate(values)
    ]


def _read_only_value(current: object) -> bool:
    """HubSpot sets this property's value itself (hs_object_id, createdate...): a batch that
    writes it is refused whole."""
    metadata = getattr(current, "modification_metadata", None)
    return bool(getattr(metadata, "read_only_value", False))


def _name_key(spec: PropertySpec) -> str:
    """The TOML key that names the property, for a spec asked for by `spec.config_key`."""
    if spec.config_key.startswith("properties["):
        return f"{spec.config_key}.name"
    if spec.config_key.startswith("segments[") or spec.config_key == "funnel":
        return f"{spec.config_key}.property"
    return spec.config_key


def _read_only_problem(spec: PropertySpec, current: object) -> ConfigProblem:
    return ConfigProblem(
        _name_key(spec),
        f"HubSpot does not let API writes change the contact property {spec.name!r} (label "
        f"{current.label!r}): it is read-only, set by HubSpot itself. Choose another `name`",  # type: ignore[attr-defined]
    )


class PropertyProvisioner(PropertyProvisioning):
    def __init__(self, api: HubSpotApi) -> None:
        self.api = api
        self.properties_api = api.client.crm.properties

    def check_access(self) -> None:
        # Reading the properties needs crm.schemas.contacts.read; a batch read of no contact
        # would be free of effects but HubSpot refuses an empty batch, so read one page of one.
        self._existing_properties()
        contacts = self.api.client.crm.contacts.basic_api
        self.api.call("reading contacts", contacts.get_page_with_http_info, limit=1)

    def ensure_properties(self, specs: Sequence[PropertySpec], *, dry_run: bool = False) -> SchemaReport:
        report = SchemaReport()
        group = self.api.settings.property_group
        existing = self._existing_properties()
        self._refuse_conflicts(specs, existing)
        if not dry_run:
            self._ensure_group(group)
        for spec in specs:
            current = existing.get(spec.name)
            if current is None:
                report.created.append(spec.name)
                if not dry_run:
                    self._create(spec, group)
                continue
            missing = self._missing_options(spec, current)
            if missing:
                report.options_added[spec.name] = [value for value, _ in missing]
                if not dry_run:
                    self._add_options(spec, current, missing)
            else:
                report.unchanged.append(spec.name)
        return report

    def _existing_properties(self) -> dict[str, object]:
        read = self.properties_api.core_api.get_all_with_http_info
        data, _ = self.api.call("reading contact properties", read, OBJECT)
        return {prop.name: prop for prop in data.results}

    def _refuse_conflicts(self, specs: Sequence[PropertySpec], existing: dict[str, object]) -> None:
        problems = []
        for spec in specs:
            current = existing.get(spec.name)
            if current is not None and _read_only_value(current):
                problems.append(_read_only_problem(spec, current))
            elif current is not None and current.type != spec.type:  # type: ignore[attr-defined]
                problems.append(
                    ConfigProblem(
                        spec.config_key,
                        f"HubSpot already has a contact property {spec.name!r} of type "
                        f"{current.type!r} (label {current.label!r}); this config writes it as "  # type: ignore[attr-defined]
                        f"{spec.type!r}. Choose another `name`, or a `type` that matches",
                    )
                )
        if problems:
            raise ConfigError(problems)

    def _ensure_group(self, group: str) -> None:
        groups_api = self.properties_api.groups_api
        _, status = self.api.call("reading the property group", groups_api.get_by_name_with_http_info,
                                  OBJECT, group, allow=(404,))
        if status == 404:
            body = PropertyGroupCreate(name=group, label=self.api.settings.property_group_label, display_order=-1)
            self.api.call("creating the property group", groups_api.create_with_http_info, OBJECT, body,
                          allow=(409,))
            log.info("property group created", group=group)

    def _create(self, spec: PropertySpec, group: str) -> None:
        body = PropertyCreate(
            name=spec.name,
            label=spec.label,
            type=spec.type,
            field_type=spec.field_type,
            group_name=group,
            description=spec.description,
            options=_option_inputs([(o.value, o.label) for o in spec.options]) if spec.options else None,
        )
        self.api.call(f"creating property {spec.name}", self.properties_api.core_api.create_with_http_info,
                      OBJECT, body, allow=(409,))
        log.info("property created", property=spec.name, type=spec.type)

    @staticmethod
    def _missing_options(spec: PropertySpec, current: object) -> list[tuple[str, str]]:
        if spec.type != "enumeration":
            return []
        have = {option.value for option in current.options or []}  # type: ignore[attr-defined]
        return [(o.value, o.label) for o in spec.options if o.value not in have]

    def _add_options(self, spec: PropertySpec, current: object, missing: list[tuple[str, str]]) -> None:
        kept = [
            OptionInput(label=o.label, value=o.value, display_order=o.display_order, hidden=o.hidden)
            for o in current.options or []  # type: ignore[attr-defined]
        ]
        start = max((o.display_order or 0 for o in kept), default=-1) + 1
        added = [
            OptionInput(label=label, value=value, display_order=start + i, hidden=False)
            for i, (value, label) in enumerate(missing)
        ]
        body = PropertyUpdate(options=kept + added)
        self.api.call(f"adding options to {spec.name}", self.properties_api.core_api.update_with_http_info,
                      OBJECT, spec.name, body)
        log.info("property options added", property=spec.name, options=[v for v, _ in missing])
