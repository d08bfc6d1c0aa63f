"""The contact properties the config needs in HubSpot, as HubSpot describes a property."""

from __future__ import annotations

from dataclasses import dataclass

from funnelsync.config import Config
from funnelsync.mappings.funnel import HELLO_WORLD_PROPERTY, WORKING_APP_PROPERTY, entry_property

# funnelsync type -> (HubSpot type, fieldType)
HUBSPOT_TYPES: dict[str, tuple[str, str]] = {
    "number": ("number", "number"),
    "string": ("string", "text"),
    "bool": ("bool", "booleancheckbox"),
    "date": ("date", "date"),
    "datetime": ("datetime", "date"),
    "enumeration": ("enumeration", "select"),
}


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class PropertySpec:
    name: str
    label: str
    type: str  # HubSpot's type
    field_type: str
    options: tuple[Option, ...] = ()
    description: str = ""
    config_key: str = ""  # the TOML key that asks for it, for error messages


def _options_for_bool() -> tuple[Option, ...]:
    return (Option("true", "Yes"), Option("false", "No"))


def property_specs(config: Config) -> list[PropertySpec]:
    specs = []
    for i, prop in enumerate(config.properties):
        hs_type, field_type = HUBSPOT_TYPES[prop.type]
        options: tuple[Option, ...] = ()
        if prop.type == "enumeration":
            options = tuple(Option(value, value) for value in prop.options or [])
        elif prop.type == "bool":
            options = _options_for_bool()
        specs.append(
            PropertySpec(prop.name, prop.label, hs_type, field_type, options,
                         prop.description, f"properties[{i}]")
        )
    if config.funnel:
        stages = tuple(Option(stage.value, stage.label) for stage in config.funnel.stages)
        specs.append(
            PropertySpec(config.funnel.property, config.funnel.label, "enumeration", "select",
                         stages, "The contact's stage in the API integration funnel, set by funnelsync.",
                         "funnel")
        )
        for stage in config.funnel.stages:
            specs.append(PropertySpec(entry_property(config.funnel, stage.value), f"Entered: {stage.label}",
                                      "datetime", "date", (), "When the contact first entered this stage.",
                                      "funnel.stages"))
        if config.funnel.signup_column and len(config.funnel.stages) > 1:
            specs += [
                PropertySpec(HELLO_WORLD_PROPERTY, "Time to first hello world (days)", "number", "number", (),
                             "Days from signup to the first API call.", "funnel.signup_column"),
                PropertySpec(WORKING_APP_PROPERTY, "Time to first working app (days)", "number", "number", (),
                             "Days from signup to production traffic.", "funnel.signup_column"),
            ]
    for i, segment in enumerate(config.segments):
        if segment.property:
            specs.append(PropertySpec(segment.property, segment.label, "bool", "booleancheckbox",
                                      _options_for_bool(), f"In the segment: {segment.when}", f"segments[{i}]"))
    return specs
