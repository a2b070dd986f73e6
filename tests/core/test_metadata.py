"""Path rules (`indexing.metadata`): checked when a pipeline is loaded, typed as front matter is, applied in order,
and round-tripped through `to_dict()` and the pipeline YAML (rag.core.metadata)."""

from __future__ import annotations

import datetime
import textwrap

import pytest

from rag.core.errors import ConfigError
from rag.core.metadata import MetadataRule, field_value, merge_fields, metadata_rules, rule_fields
from rag.core.pipeline import IndexingSettings
from rag.core.serialization import dump_pipeline, loads_pipeline
from rag.ingest.chunkers.recursive import RecursiveChunker

PIPELINE = """
components:
  bm25: {type: BM25Retriever}
indexing:
  chunker: {type: RecursiveChunker, init: {chunk_size: 100, chunk_overlap: 0, unit: chars}}
  metadata:
%s
"""


def with_rules(rules: str) -> str:
    return PIPELINE % "\n".join(f"    {line}" for line in textwrap.dedent(rules).strip().splitlines())


def test_rules_round_trip_through_yaml_and_to_dict() -> None:
    text = with_rules(
        """
        - {match: "contracts/**", fields: {kind: contract, signed: 2026-01-05, tags: [acme, 7], ok: true}}
        - match: "*.pdf"
          fields: {pages_checked: 1.5}
        """
    )
    pipeline = loads_pipeline(text, source="p.yaml")
    assert pipeline.indexing is not None
    assert pipeline.indexing.metadata == (
        MetadataRule("contracts/**", {"kind": "contract", "signed": "2026-01-05", "tags": ["acme", 7], "ok": True}),
        MetadataRule("*.pdf", {"pages_checked": 1.5}),
    )
    assert pipeline.to_dict()["indexing"]["metadata"][0] == {
        "match": "contracts/**",
        "fields": {"kind": "contract", "signed": "2026-01-05", "tags": ["acme", 7], "ok": True},
    }
    dumped = dump_pipeline(pipeline)
    again = loads_pipeline(dumped)
    assert again == pipeline and again.indexing == pipeline.indexing and dump_pipeline(again) == dumped


def test_a_pipeline_without_rules_writes_no_metadata_key() -> None:
    settings = IndexingSettings(chunker=RecursiveChunker(chunk_size=100, chunk_overlap=0, unit="chars"))
    assert settings.metadata == () and "metadata" not in settings.to_dict()  # manifests stay as they were


def test_rules_given_in_python_are_checked_and_typed() -> None:
    chunker = RecursiveChunker(chunk_size=100, chunk_overlap=0, unit="chars")
    rules = [{"match": "a/**", "fields": {"d": datetime.date(2026, 1, 2)}}]
    settings = IndexingSettings(chunker=chunker, metadata=rules)  # type: ignore[arg-type]
    assert settings.metadata == (MetadataRule("a/**", {"d": "2026-01-02"}),)
    with pytest.raises(ConfigError, match=r"^indexing.metadata\[0\] needs 'match'"):
        IndexingSettings(chunker=chunker, metadata=[{"fields": {"k": 1}}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("{match: a, fields: {k: v}}", r"^p.yaml: indexing.metadata must be a list of rules such as \[\{match: "),
        ("- just a string", r"^p.yaml: indexing.metadata\[0\] must be a mapping \{match: GLOB, fields: \{...\}\}"),
        ("- {fields: {k: v}}", r"^p.yaml: indexing.metadata\[0\] needs 'match', a glob over relative paths"),
        ("- {match: '', fields: {k: v}}", r"indexing.metadata\[0\] needs 'match'"),
        ("- {match: a/**, fields: [k, v]}", r"^p.yaml: indexing.metadata\[0\].fields must be a non-empty mapping"),
        ("- {match: a/**}", r"indexing.metadata\[0\].fields must be a non-empty mapping of field names to values"),
        ("- {match: a, fields: {k: v}}\n- {match: b, fields: {k: {x: 1}}}", r"indexing.metadata\[1\].fields.k is"),
        ("- {match: a/**, fields: {k: }}", r"fields.k is None; a field is a string, number, true/false, date or a"),
        ("- {match: a/**, fields: {k: []}}", r"fields.k is \[\]; a field is"),
        ("- {match: a/**, fields: {k: [1, [2]]}}", r"fields.k is \[1, \[2\]\]"),
        ("- {match: a/**, fields: {k: v}, where: x}", r"indexing.metadata\[0\] has unknown key 'where'"),
    ],
)
def test_bad_rules_are_refused_at_load_naming_the_entry(rules: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loads_pipeline(with_rules(rules), source="p.yaml")


def test_later_rules_override_earlier_and_front_matter_then_sidecar_override_rules() -> None:
    rules = metadata_rules(
        [
            {"match": "contracts/**", "fields": {"kind": "contract", "team": "legal"}},
            {"match": "*.pdf", "fields": {"kind": "scan"}},
            {"match": "other/**", "fields": {"never": True}},
        ]
    )
    assert rule_fields("contracts/2026/acme.pdf", rules) == {"kind": "scan", "team": "legal"}
    assert rule_fields("contracts/acme.md", rules) == {"kind": "contract", "team": "legal"}
    assert rule_fields("notes.md", rules) == {}
    merged = merge_fields({"kind": "scan", "team": "legal"}, {"kind": "memo", "a": 1}, {"a": 2})
    assert merged == {"kind": "memo", "team": "legal", "a": 2}


def test_field_values_are_typed_as_front_matter() -> None:
    assert field_value(datetime.datetime(2026, 1, 2, 3, 4)) == "2026-01-02T03:04:00"
    assert field_value([datetime.date(2026, 1, 2), "x", 3]) == ["2026-01-02", "x", 3]
    assert [field_value(v) for v in (None, {}, {"a": 1}, [], [None], [{"a": 1}])] == [None] * 6
