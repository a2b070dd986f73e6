"""`rag ask`: an answer from the index, its sources, or the words that the passages do not answer it."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from rag.cli.common import (
    allow_option,
    emit,
    filter_option,
    guard,
    index_dir_option,
    index_option,
    index_path,
    json_option,
    out,
    pipeline_option,
    shown,
)
from rag.core.errors import ConfigError

__all__ = ["ask_cmd"]


@click.command("ask")
@click.argument("question")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--passages", type=click.IntRange(min=1), default=None, help="Number of passages to retrieve.")
@filter_option
@click.option(
    "--answer-mode",
    type=click.Choice(["extractive", "grounded", "generate"]),
    default=None,
    help="Quote the passages, write and check each sentence, or write freely [default: the pipeline's].",
)
@click.option("--strategy", type=click.Choice(["greedy", "sample", "beam", "best_of_n"]), default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--sample-top-k", type=int, default=None, help="Sample from the K most likely tokens (0: all).")
@click.option("--top-k", "old_top_k", type=int, default=None, hidden=True, help="Old name of --sample-top-k.")
@click.option("--top-p", type=float, default=None, help="Sample from the smallest set of tokens with this mass.")
@click.option("--min-p", type=float, default=None, help="Drop tokens below this fraction of the top probability.")
@click.option("--max-tokens", type=int, default=None, help="Longest answer, in tokens.")
@click.option("--seed", type=int, default=None, help="Make sampling reproducible.")
@click.option("--num-beams", type=int, default=None, help="Beam search with this many beams.")
@click.option("--best-of", type=int, default=None, metavar="N", help="Sample N answers and keep the best-scoring one.")
@click.option("--speculative", default=None, metavar="ngram|draft:MODEL", help="Speculative decoding.")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option("--generator", type=click.Choice(["transformers", "vllm", "openai", "llamacpp"]), default=None)
@click.option("--model", default=None, help="The generator's model (with --generator).")
@click.option("--base-url", default=None, help="The OpenAI-compatible server (with --generator openai).")
@json_option
def ask_cmd(
    question: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    passages: int | None,
    filters: str | None,
    answer_mode: str | None,
    stream: bool,
    generator: str | None,
    model: str | None,
    base_url: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Answer QUESTION from the index, citing the passages used, or say that they do not answer it.

    --answer-mode picks how (docs/answers.md). Decoding options override the pipeline's for this question;
    --generator runs the pipeline with another backend (keeping its decoding options). See docs/generation.md.
    """
    from rag.api import RAG
    from rag.core.types import Answer
    from rag.generate.select import replace_generator

    if not question.strip():
        raise click.BadParameter("the question is empty; ask a question in words", param_hint="QUESTION")
    with guard(as_json):
        rag = RAG(index_path(index, index_dir), pipeline, allowed)
        if generator is not None:
            rag = RAG(rag.folder.root, replace_generator(rag.pipeline, generator, model, base_url, allowed), allowed)
        elif model is not None or base_url is not None:
            raise ConfigError("--model and --base-url choose the generator's backend; give --generator too")
        old_top_k = options.pop("old_top_k")
        if old_top_k is not None:
            click.echo(
                "rag ask: --top-k is now --sample-top-k (--top-k is the number of hits in rag query; here it is "
                "accepted as the sampling cut-off until the next release; --passages sets the passages)",
                err=True,
            )
            options["sample_top_k"] = options["sample_top_k"] if options["sample_top_k"] is not None else old_top_k
        decoding = _decoding_overrides(**options)
        if stream and not as_json:
            answer, streamed = None, ""
            for item in rag.ask_stream(question, passages, decoding, answer_mode, filters):
                if isinstance(item, Answer):
                    answer = item
                else:
                    streamed += item
                    out.print(shown(item).replace("\\x0a", "\n"), end="", highlight=False, markup=False)
            assert answer is not None
            out.print()
            if streamed.strip() != answer.text.strip():  # the support check changed what was streamed
                _print_retracted(answer)
        else:
            answer = rag.ask(question, passages, decoding, answer_mode=answer_mode, filters=filters)
            out.print(shown(answer.text), highlight=False, markup=False)
    if as_json:
        data = answer.to_dict()
        keys = ("answer", "mode", "abstained", "decision", "answerability", "citations", "claims", "retracted")
        emit({key: data[key] for key in (*keys, "invalid_citations", "hits", "usage")})
        return
    _print_sources(answer)


def _print_retracted(answer: Any) -> None:
    """After a stream: what the support check took back, and the answer as it stands now."""
    for claim in answer.retracted:
        out.print(f"[yellow]Retracted (no passage supports it):[/yellow] {escape(shown(claim.text))}")
    out.print("[bold]Answer:[/bold] " + escape(shown(answer.text)))


_HOW = {"overlap": " (attributed by word overlap)", "support": " (found by the support check)"}


def _print_sources(answer: Any) -> None:
    out.print()
    if answer.abstained:
        out.print(
            "[bold]No answer:[/bold] the passages retrieved do not answer this question "
            f"(answerability {answer.answerability:.2f}, under the calibrated threshold)."
            if answer.answerability is not None
            else "[bold]No answer:[/bold] nothing relevant was retrieved."
        )
        return
    cited = answer.citations or []
    label = "Sources" if cited else "Passages given to the model (the answer cites none)"
    if answer.hits:
        out.print(f"[bold]{label}:[/bold]")
    if not cited:
        for n, hit in enumerate(answer.hits, start=1):
            out.print(f"  [{n}] {shown(hit.chunk.path)}", highlight=False, markup=False)
        return
    for citation in cited:
        hit = citation.hit
        if citation.start is not None:
            page = f" p. {citation.page}" if citation.page else ""
            where = f" chars {citation.start}-{citation.end}{page}"
        else:
            pages = hit.chunk.metadata.get("pages")
            where = f" p. {', '.join(map(str, pages))}" if pages else ""
        how = {"overlap": " (attributed by word overlap)", "support": " (found by the support check)"}.get(
            citation.by, ""
        )
        out.print(f"  [{citation.n}] {shown(hit.chunk.path)}{where}{how}", highlight=False, markup=False)
        if citation.quote and citation.by != "quote":
            out.print(f'      "{shown(" ".join(citation.quote.split()))}"', highlight=False, markup=False)


def _decoding_overrides(
    strategy: str | None,
    temperature: float | None,
    sample_top_k: int | None,
    top_p: float | None,
    min_p: float | None,
    max_tokens: int | None,
    seed: int | None,
    num_beams: int | None,
    best_of: int | None,
    speculative: str | None,
) -> dict[str, Any]:
    """The decoding options given on the command line (validated by the generator's DecodingConfig)."""
    given = {
        "strategy": strategy,
        "temperature": temperature,
        "sample_top_k": sample_top_k,
        "top_p": top_p,
        "min_p": min_p,
        "max_tokens": max_tokens,
        "seed": seed,
        "num_beams": num_beams,
        "best_of": best_of,
    }
    decoding: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if num_beams is not None and strategy is None:
        decoding["strategy"] = "beam"
    if best_of is not None and strategy is None:
        decoding["strategy"] = "best_of_n"
    if speculative is not None:
        method, _, draft = speculative.partition(":")
        if method not in ("ngram", "draft") or (method == "draft") != bool(draft):
            raise ConfigError(f"--speculative must be 'ngram' or 'draft:MODEL', got {speculative!r}")
        decoding["speculative"] = {"method": method, **({"model": draft} if draft else {})}
    return decoding
