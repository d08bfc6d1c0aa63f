"""Finding the rows a HubSpot error names, from the shapes HubSpot answers with."""

from __future__ import annotations

import json

from funnelsync.connectors.crm import ContactWrite
from funnelsync.connectors.hubspot.rejections import rows_named

BATCH = [
    ContactWrite("ada@example.com", {"developer_role": "Engineering", "used_event_count": "3"}),
    ContactWrite("grace@example.com", {"developer_role": "Astronaut", "used_event_count": "12"}),
    ContactWrite("linus@example", {"developer_role": "Sales", "used_event_count": "12"}),
]


def test_an_invalid_option_names_the_rows_with_that_value_not_the_allowed_ones() -> None:
    detail = {"isValid": False, "message": "Astronaut was not one of the allowed options: [Engineering, Sales]",
              "error": "INVALID_OPTION", "name": "developer_role"}
    body = {"status": "error", "category": "VALIDATION_ERROR",
            "message": f"Property values were not valid: {json.dumps([detail])}"}
    assert rows_named(BATCH, body) == {1: detail["message"]}


def test_an_invalid_email_is_named_by_the_address_in_the_message() -> None:
    body = {"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid input",
            "errors": [{"message": "Email address linus@example is invalid", "code": "INVALID_EMAIL"}]}
    assert list(rows_named(BATCH, body)) == [2]


def test_a_value_is_matched_only_in_the_property_the_error_names() -> None:
    body = {"errors": [{"message": "12 was not a valid number.", "code": "INVALID_INTEGER",
                        "context": {"propertyName": ["developer_role"]}}]}
    assert rows_named(BATCH, body) == {}


def test_a_property_that_does_not_exist_names_every_row_that_sends_it() -> None:
    body = {"errors": [{"message": 'Property "used_event_count" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": ["used_event_count"]}}]}
    assert list(rows_named(BATCH, body)) == [0, 1, 2]


def test_an_error_that_names_nothing_names_no_row() -> None:
    assert rows_named(BATCH, {"status": "error", "message": "Something went wrong"}) == {}
