"""The filter language (rag.core.filters): string and JSON forms, typed checks, matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rag.core.errors import ConfigError
from rag.core.filters import Filter, chunk_fields, field_types, parse_filter

FIELDS = {
    "path": "contracts/2026/acme.pdf",
    "type": "pdf",
    "title": "Acme supply",
    "pages": [3, 4],
    "size": 2048,
    "modified": datetime(2026, 3, 1, tzinfo=UTC),
    "draft": False,
}
KNOWN = field_types([FIELDS])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type == pdf", True),
        ("type in [pdf, md] and modified >= 2026-01-01", True),
        ("modified < 2026-01-01", False),
        ('path matches "contracts/**"', True),
        ('path matches "*.md"', False),
        ("pages > 3", True),  # a list matches when any item does
        ("pages == 5", False),
        ("pages != 3", False),
        ("not (size > 1000 or draft == true)", False),
        ("draft == false and title == 'Acme supply'", True),
        ("type not in [md, txt]", True),
        ("section exists", False),
        ("not section exists", True),
        ("TYPE == pdf", False),  # field names are as written
    ],
)
def test_string_form_matches(text: str, expected: bool) -> None:
    flt = parse_filter(text).checked({**KNOWN, "section": "string", "TYPE": "string"})
    assert flt.matches(FIELDS) is expected
    assert Filter.from_dict(flt.to_dict()).checked({**KNOWN, "section": "string", "TYPE": "string"}) == flt


def test_json_form_is_mongo_like() -> None:
    flt = Filter.from_dict({"type": {"$in": ["pdf", "md"]}, "modified": {"$gte": "2026-01-01"}, "draft": False})
    assert flt.checked(KNOWN).matches(FIELDS)
    either = Filter.from_dict({"$or": [{"size": {"$lt": 10}}, {"$not": {"type": "md"}}]})
    assert either.checked(KNOWN).matches(FIELDS)
    assert Filter.from_dict({"title": {"$exists": True}}).checked(KNOWN).matches(FIELDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tpye == pdf", "no chunk of this index has a field 'tpye'; known fields: draft, modified, pages, path"),
        ("size == big", "'size' is a number; compare it with a number, not 'big'"),
        ("modified > soon", "'modified' is a date; compare it with a date such as 2026-01-01"),
        ("draft == 1", "'draft' is true or false"),
        ("type ==", "ends too soon"),
        ("(type == pdf", "expected ')'"),
        ("type == pdf size > 1", "unexpected 'size' at character 13; join tests with and / or"),
        ("type = pdf", "cannot read"),
        ("size matches '1*'", "'size matches' needs a string field"),
        ("   ", "the filter is empty"),
    ],
)
def test_bad_filters_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"filter: .*{__import__('re').escape(message)}"):
        parse_filter(text).checked(KNOWN)


def test_bad_json_filters_name_the_problem() -> None:
    for data, message in [
        ({}, "non-empty JSON object"),
        ({"type": {"$like": "p%"}}, r"unknown operator '\$like'"),
        ({"$nor": []}, r"unknown operator '\$nor' at the top"),
        ({"type": {"$in": "pdf"}}, r"\$in takes a list"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Filter.from_dict(data)


def test_unknown_fields_can_be_allowed_and_match_nothing() -> None:
    flt = parse_filter("tenant == acme").checked(KNOWN, allow_unknown=True)
    assert not flt.matches(FIELDS)
    assert parse_filter("not tenant == acme").checked(KNOWN, allow_unknown=True).matches(FIELDS)


def test_chunk_fields_keep_typed_metadata_and_drop_bookkeeping() -> None:
    fields = chunk_fields("docs/Guide.MD", {"title": "G", "pages": [1], "page_starts": [0], "sha256": "x", "n": 2})
    assert fields == {"path": "docs/Guide.MD", "type": "md", "title": "G", "pages": [1], "n": 2}
    assert chunk_fields("Makefile", {})["type"] == ""
