"""docs/config-reference.md is what a RevOps admin looks a key up in: current, complete, every key
described, and every example one that `validate` accepts at that key."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from funnelsync.cli.config_reference import REGENERATE, Key, Table, config_schema, tables
from funnelsync.config import Config, parse_config
from funnelsync.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/config-reference.md"


def test_the_reference_is_what_the_config_schema_gives_now() -> None:
    generated = subprocess.run([sys.executable, "-m", "funnelsync.cli.config_reference"], capture_output=True,
                               text=True, check=True, cwd=ROOT).stdout
    written = DOC.read_text() if DOC.exists() else ""
    if written != generated:
        line = next(n for n, (a, b) in enumerate(zip_longest(written.splitlines(), generated.splitlines()), 1)
                    if a != b)
        pytest.fail(f"docs/config-reference.md is stale (from line {line}): regenerate it with `{REGENERATE}` "
                    "(or `make config-reference`)", pytrace=False)


def keys_of(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of the config, found from the models themselves, not from the schema the
    reference is generated from."""
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, field
        for inner, suffix in _models_in(field.annotation):
            yield from keys_of(inner, key + suffix)


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _models_in(get_args(annotation)[0])
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _models_in(arg)
    elif origin is list:
        yield from ((inner, "[]" + suffix) for inner, suffix in _models_in(get_args(annotation)[0]))
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ""


def test_every_key_of_every_section_and_table_is_in_the_reference() -> None:
    text = DOC.read_text()
    missing = [key for key, _ in keys_of(Config)
               if f"| `{key}` |" not in text and f"| `[{key}]` |" not in text and f"| `[[{key}]]` |" not in text]
    assert missing == []


def test_every_key_says_what_it_is_for() -> None:
    undescribed = [key for key, field in keys_of(Config) if not (field.description or "").strip()]
    assert undescribed == [], "give each a Field(description=...), then regenerate the reference"


def _written_one_by_one() -> Iterator[tuple[Table, Key]]:
    """The keys a config writes as `key = value`: not the file's sections, nor arrays of tables."""
    for table in tables(config_schema())[1:]:
        for key in table.keys:
            if key.type != "array of tables":
                yield table, key


def test_every_key_has_an_example() -> None:
    assert [key.key for _, key in _written_one_by_one() if key.example is None] == []


# A config that `validate` accepts, to try each example in: the one deploy/ ships.
VALID = tomllib.loads((ROOT / "deploy/config.toml").read_text())
MOESIF = {"kind": "moesif", "fields": {"email": "email"}}


def _put(data: dict[str, Any], key: str, value: Any) -> str:
    """Put `value` at `key` (`[]` meaning the first item); returns the key as errors name it."""
    *path, last = key.replace("[]", ".0").split(".")
    here: Any = data
    for part in path:
        if part.isdigit():
            here = here[int(part)]
        else:
            here = here.setdefault(part, [{}] if part in ("properties", "segments", "stages") else {})
    here[last] = value
    return key.replace("[]", "[0]")


@pytest.mark.parametrize(("table", "key"), [pytest.param(t, k, id=k.key) for t, k in _written_one_by_one()])
def test_each_example_is_toml_that_the_config_accepts_at_its_key(table: Table, key: Key) -> None:
    assert key.example is not None
    value = tomllib.loads(key.example)[key.name]
    data = copy.deepcopy(VALID)
    kind = next((k.allowed for k in table.keys if k.name == "kind"), None)
    if table.path == "source" and kind is not None and json.loads(kind.strip("`")) == "moesif":
        data["source"] = copy.deepcopy(MOESIF)
    concrete = _put(data, key.key, value)
    try:
        parse_config(data)
    except ConfigError as exc:
        at_key = [f"{p.key}: {p.message}" for p in exc.problems
                  if p.key == concrete or p.key.startswith((concrete + ".", concrete + "["))]
        assert at_key == [], key.example
