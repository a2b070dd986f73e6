import pytest

from rag.core.errors import ConfigError, PipelineError
from rag.core.serialization import dump_pipeline, find_pipeline, load_pipeline, loads_pipeline, shipped_pipelines

HYBRID = """
name: t
components:
  a: {type: tests.fakes.HashRetriever, init: {dim: 8}}
  b: {type: tests.fakes.HashRetriever, init: {dim: 16}}
  fusion: {type: ReciprocalRankFusion, init: {k: 10}}
connections:
  - {sender: a.hits, receiver: fusion.hits}
  - {sender: b.hits, receiver: fusion.hits}
inputs: [query]
"""
ALLOWED = ["tests.fakes.HashRetriever"]


def test_round_trip_gives_an_equal_pipeline() -> None:
    first = loads_pipeline(HYBRID, ALLOWED)
    text = dump_pipeline(first)
    second = loads_pipeline(text, ALLOWED)
    assert second == first
    assert dump_pipeline(second) == text
    assert second.components["b"].settings["dim"] == 16


@pytest.mark.parametrize("name", sorted(shipped_pipelines()))
def test_shipped_pipelines_round_trip(name: str) -> None:
    pipeline = load_pipeline(name)
    assert loads_pipeline(dump_pipeline(pipeline)) == pipeline
    assert pipeline.indexing is not None


def test_user_classes_must_be_allowed_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown component type 'tests.fakes.HashRetriever'.*allowed="):
        loads_pipeline(HYBRID)


def test_arbitrary_imports_are_refused() -> None:
    text = "components:\n  x: {type: os.system, init: {}}\n"
    with pytest.raises(ConfigError, match=r"unknown component type 'os.system'"):
        loads_pipeline(text)


def test_allowed_name_that_is_not_a_component_is_refused() -> None:
    text = "components:\n  x: {type: collections.OrderedDict}\n"
    with pytest.raises(ConfigError, match=r"not a rag Component"):
        loads_pipeline(text, ["collections.OrderedDict"])


def test_python_yaml_tags_are_refused() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        loads_pipeline("components: !!python/object/apply:os.system ['true']\n")


def test_close_match_is_suggested_for_a_typo() -> None:
    with pytest.raises(ConfigError, match=r"components.f: unknown component type 'ReciprocalRankFuson'.*did you mean"):
        loads_pipeline("components:\n  f: {type: ReciprocalRankFuson}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", r"must be a mapping"),
        ("components: {}\n", r"'components' must be a non-empty mapping"),
        ("compnents: {}\n", r"unknown key 'compnents'"),
        (
            "components:\n  f: {type: ReciprocalRankFusion, init: {kk: 1}}\n",
            r"components.f: ReciprocalRankFusion: .*kk.*settings are: k, top_k",
        ),
        ("components:\n  f: {type: ReciprocalRankFusion, init: {k: -1}}\n", r"components.f: .*k must be >= 0"),
        ("components:\n  f: {type: ReciprocalRankFusion, settings: {}}\n", r"unknown key 'settings'"),
        ("components:\n  f: {type: ReciprocalRankFusion}\nconnections: [a]\n", r"connections\[0\]"),
        ("components:\n  f: {type: ReciprocalRankFusion}\nindexing: {include: []}\n", r"'indexing' must be .*chunker"),
        ("components: [\n", r"not valid YAML"),
    ],
)
def test_malformed_pipelines_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loads_pipeline(text, source="p.yaml")


def test_validation_errors_name_the_file() -> None:
    text = "components:\n  f: {type: ReciprocalRankFusion}\nconnections:\n  - {sender: f.hits, receiver: g.hits}\n"
    with pytest.raises(PipelineError, match=r"^p.yaml: connection 'f.hits -> g.hits'"):
        loads_pipeline(text, source="p.yaml")


def test_pipeline_by_name_or_path(tmp_path) -> None:
    assert find_pipeline("default").name == "default.yaml"
    path = tmp_path / "mine.yaml"
    path.write_text(HYBRID)
    assert load_pipeline(path, ALLOWED).name == "t"
    with pytest.raises(ConfigError, match=r"no pipeline 'nope'.*default"):
        find_pipeline("nope")


@pytest.mark.parametrize(
    "content",
    [
        b"root:$6$s3cr3tHash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        b"key: [s3cr3tHash\nother: s3cr3tHash\n",
        b"s3cr3tHash: 1\nanother: s3cr3tHash\n",
        b"caf\xe9 s3cr3tHash\n",
        b"\x00\x01s3cr3tHash",
    ],
)
def test_a_file_that_is_not_a_pipeline_is_refused_without_quoting_it(tmp_path, content) -> None:
    path = tmp_path / "shadow"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(path)
    assert "s3cr3t" not in str(raised.value) and str(path) in str(raised.value)
