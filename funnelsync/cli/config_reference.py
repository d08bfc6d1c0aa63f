"""docs/config-reference.md, generated from the config's pydantic schema, so that the reference
says what `validate` accepts and cannot fall behind it:

    python -m funnelsync.cli.config_reference > docs/config-reference.md     (or `make config-reference`)

Every key's type, default and limits come from `Config.model_json_schema()`; its description
and example from its `Field(description=..., examples=[...])` (the default is the example when
there is none). tests/test_config_reference.py fails when the file is stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import click
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from funnelsync.config import ENVIRONMENT_OVERRIDES, Config

REGENERATE = "python -m funnelsync.cli.config_reference > docs/config-reference.md"
Schema = Mapping[str, Any]


class _WithFactoryDefaults(GenerateJsonSchema):
    """pydantic leaves out the defaults made by a `default_factory`; a reader needs them too."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def config_schema() -> JsonSchemaValue:
    return Config.model_json_schema(schema_generator=_WithFactoryDefaults)


@dataclass(frozen=True)
class Key:
    key: str  # as errors name it: `hubspot.requests_per_10s`, `funnel.stages[].enroll.list`
    name: str
    type: str
    default: str
    allowed: str
    description: str
    example: str | None  # a line of TOML; None for an array of tables, written with its own headers
    is_table: bool
    names_variable: str | None  # a `*_env` key's default: the variable that holds a secret


@dataclass(frozen=True)
class Table:
    path: str  # `hubspot`, `funnel.stages[]`; "" for the file itself
    heading: str
    description: str  # that of the key that holds it
    keys: tuple[Key, ...]


def tables(schema: Schema) -> list[Table]:
    """The file, then every section and nested table, in the order the config declares them."""
    return list(_tables(schema, "", "", "", schema["$defs"]))


def _tables(model: Schema, path: str, heading: str, description: str, defs: Schema) -> Iterator[Table]:
    required = set(model.get("required", ()))
    keys = []
    nested: list[tuple[Schema, str, str, str]] = []
    for name, raw in model["properties"].items():
        field, _ = _without_null(raw)
        key = f"{path}.{name}" if path else name
        held = list(_tables_in(field, key, defs))
        nested += [(*table, field.get("description", "")) for table in held]
        keys.append(_key(key, name, field, required=name in required, is_table=bool(held)))
    yield Table(path, heading, description, tuple(keys))
    for sub_model, sub_path, sub_heading, sub_description in nested:
        yield from _tables(sub_model, sub_path, sub_heading, sub_description, defs)


def _tables_in(field: Schema, key: str, defs: Schema) -> Iterator[tuple[Schema, str, str]]:
    """The tables a key holds: a table, an array of tables, or one table of several kinds."""
    if "$ref" in field:
        yield _ref(field, defs), key, _heading(key)
    elif field.get("type") == "array" and "$ref" in field.get("items", {}):
        yield _ref(field["items"], defs), f"{key}[]", _heading(f"{key}[]")
    elif "oneOf" in field and "discriminator" in field:
        tag = field["discriminator"]["propertyName"]
        for branch in field["oneOf"]:
            variant = _ref(branch, defs)
            value = _toml(variant["properties"][tag]["const"])
            yield variant, key, f"{_heading(key)} with `{tag} = {value}`"


def _heading(path: str) -> str:
    if path.endswith("[]") and "[]" not in path[:-2]:
        return f"`[[{path[:-2]}]]`"
    if "[]" not in path:
        return f"`[{path}]`"
    return f"`{path}`"


def _key(key: str, name: str, field: Schema, *, required: bool, is_table: bool) -> Key:
    variable = next((v for v, (section, option) in ENVIRONMENT_OVERRIDES.items() if f"{section}.{option}" == key),
                    None)
    description = field.get("description", "")
    if variable:
        description += f" `${variable}` wins over it."
    return Key(
        key=key, name=name, type=_type_with_examples(field), default=_default(field, required=required,
                                                                        is_table=is_table),
        allowed=_allowed(field), description=description.strip(),
        example=None if field.get("type") == "array" and is_table else _example(name, field),
        is_table=is_table,
        names_variable=field["default"] if name.endswith("_env") and isinstance(field.get("default"), str) else None,
    )


def _without_null(field: Schema) -> tuple[Schema, bool]:
    """`X | None` as X: the key may be left out (its default then says "not set")."""
    branches = field.get("anyOf")
    if branches is None:
        return field, False
    kept = [b for b in branches if b.get("type") != "null"]
    outer = {k: v for k, v in field.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**outer, **kept[0]}, len(kept) < len(branches)
    return {**outer, "anyOf": kept}, len(kept) < len(branches)


def _ref(field: Schema, defs: Schema) -> Schema:
    definition: Schema = defs[field["$ref"].rsplit("/", 1)[1]]
    return definition


_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "true or false"}
_PLURALS = {"string": "strings", "integer": "integers", "number": "numbers", "boolean": "booleans"}


def _type(field: Schema) -> str:
    if "$ref" in field or "oneOf" in field:
        return "table"
    kind = field.get("type")
    if kind == "array":
        items = field.get("items", {})
        return "array of tables" if "$ref" in items else f"array of {_PLURALS.get(str(items.get('type')), 'values')}"
    if kind == "object":
        values = field.get("additionalProperties", {})
        return f"table of {_PLURALS.get(str(values.get('type')), 'values')}" if isinstance(values, dict) else "table"
    if "anyOf" in field:
        return " or ".join(_type(branch) for branch in field["anyOf"])
    return _TYPES.get(str(kind), str(kind))


def _type_with_examples(field: Schema) -> str:
    """The schema's type, and an example's when a validator takes more (a sequence id as an integer)."""
    written = _type(field)
    integers = any(isinstance(e, int) and not isinstance(e, bool) for e in field.get("examples") or [])
    return f"integer or {written}" if written == "string" and integers else written


def _default(field: Schema, *, required: bool, is_table: bool) -> str:
    if required:
        return "required"
    if "default" not in field:
        return "optional"
    default = field["default"]
    if default is None:
        return "not set"
    if is_table and isinstance(default, dict):
        return "each key's default"
    return f"`{_toml(default)}`"


def _allowed(field: Schema) -> str:
    found = []
    if "const" in field:
        found.append(f"`{_toml(field['const'])}`")
    if "enum" in field:
        found.append("one of " + ", ".join(f"`{_toml(v)}`" for v in field["enum"]))
    for bound, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if bound in field:
            found.append(f"{sign} {_toml(field[bound])}")
    if field.get("minLength") == 1:
        found.append("not empty")
    elif "minLength" in field:
        found.append(f"at least {field['minLength']} characters")
    if "maxLength" in field:
        found.append(f"at most {field['maxLength']} characters")
    if "minItems" in field:
        found.append(f"at least {field['minItems']}")
    return ", ".join(found)


def _example(name: str, field: Schema) -> str | None:
    examples = field.get("examples") or []
    if examples:
        value = examples[0]
    elif "const" in field:
        value = field["const"]
    elif field.get("default") not in (None, "", [], {}):
        value = field["default"]
    else:
        return None
    return f"{name} = {_toml(value)}"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml(value: Any) -> str:
    """A value as TOML writes it (an inline table for a table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{k if _BARE_KEY.match(k) else json.dumps(k)} = {_toml(v)}" for k, v in value.items())
        return "{ " + items + " }"
    return str(value)


def environment_variables(schema: Schema) -> list[tuple[str, str, str]]:
    """(variable, what it sets, how): the overrides, then the variables that `*_env` keys name by default."""
    found = [("FUNNELSYNC_CONFIG", "the config file's path", "instead of `./config.toml`; `-c CONFIG` wins over it")]
    found += [(variable, f"`{section}.{key}`", "wins over the file")
              for variable, (section, key) in ENVIRONMENT_OVERRIDES.items()]
    found += [(key.names_variable, f"the secret that `{key.key}` names (by default)",
               "read only from the environment, never logged")
              for table in tables(schema) for key in table.keys if key.names_variable]
    return found


INTRODUCTION = """\
# config.toml reference

<!-- Generated from the config's pydantic schema by `{regenerate}`: do not edit it
here. A key's text is the `description=` of its `Field` in funnelsync/ (config.py, settings.py,
connectors/*_settings.py, connectors/moesif/settings.py). -->

funnelsync reads `config.toml` (or `-c CONFIG`, or `$FUNNELSYNC_CONFIG`). Every problem is
reported at once, at its key as below (`properties[1].options: ...`, where `[]` is the position
in the array), with exit status 2. Types are strict: a number, a boolean or an array is never read
from a string (`requests_per_10s = "90"` is an error). Relative SQLite paths are taken from the
config file's folder. An unknown key is an error (check its spelling).
"""


def reference_markdown() -> str:
    schema = config_schema()
    every = tables(schema)
    lines = [INTRODUCTION.format(regenerate=REGENERATE), "## Sections", "",
             "| section | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {_cell(_heading(key.key if key.type != 'array of tables' else key.key + '[]'))} | {key.type} | "
              f"{_cell(key.default)} | {_cell(key.description)} |" for key in every[0].keys]
    lines += ["", "## Environment variables", "", "| variable | sets | |", "|---|---|---|"]
    lines += [f"| `{variable}` | {_cell(sets)} | {_cell(how)} |"
              for variable, sets, how in environment_variables(schema)]
    for table in every[1:]:
        lines += ["", f"## {table.heading}", ""]
        lines += [table.description, ""] if table.description else []
        lines += ["| key | type | default | allowed | description | example |", "|---|---|---|---|---|---|"]
        lines += [f"| `{key.key}` | {key.type} | {_cell(key.default)} | {_cell(key.allowed)} | "
                  f"{_cell(_described(key))} | {_cell(f'`{key.example}`' if key.example else '')} |"
                  for key in table.keys]
    return "\n".join(lines) + "\n"


def _described(key: Key) -> str:
    if key.is_table:
        below = f"{key.key}[]" if key.type == "array of tables" else key.key
        return f"{key.description} See {_heading(below)} below."
    return key.description


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    click.echo(reference_markdown(), nl=False)


if __name__ == "__main__":
    main()
