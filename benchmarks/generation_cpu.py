"""Generation on CPU with SmolLM2-135M-Instruct: tokens per second and time to first token per decoding strategy,
and time to first token with and without a cached shared prefix (the system prompt); with `--backends`, the
transformers backend (fp32) and llama.cpp (the Q4_1 GGUF as it is) side by side on one RAG prompt.

The RAG prompt asks for an answer that quotes its passage, so prompt-lookup speculative decoding has n-grams
to copy. "Time to first token" is from the call to the first text piece handed to `on_token`; beam search and
best-of-N do not stream, so theirs is the whole call. Tokens per second count every generated sequence.

    python benchmarks/generation_cpu.py [--max-tokens 32] [--repeats 3] [--threads N] [--no-write]
    python benchmarks/generation_cpu.py --backends [--max-tokens 64] [--repeats 3] [--threads 2] [--serve 8]

The tables are printed and written into docs/benchmarks.md between `<!-- generation_cpu -->` markers
(`<!-- generation_cpu_backends -->` with `--backends`; `benchmarks/generation_backends.py` has that part).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import command_line, header, markdown_table, write_section

from rag.core.types import Chunk, Hit
from rag.generate.prompt import PromptBuilder
from rag.generate.transformers_generator import TransformersGenerator

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PASSAGES = [
    ("eiffel.md", "The Eiffel Tower was completed in 1889 as the entrance arch of the World's Fair in Paris."),
    ("otters.md", "Sea otters eat sea urchins, crabs and clams, and open the shells with stones."),
    ("etna.md", "Mount Etna is an active volcano on the east coast of Sicily, in Italy."),
]
QUESTION = "When was the Eiffel Tower completed? Quote the passage."
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {}),
    ("sample", {"strategy": "sample", "temperature": 0.7, "top_p": 0.9, "seed": 1}),
    ("beam", {"strategy": "beam", "num_beams": 3}),
    ("best_of_n", {"strategy": "best_of_n", "best_of": 3, "temperature": 0.7, "seed": 1}),
    ("greedy + prompt lookup", {"speculative": {"method": "ngram", "num_speculative_tokens": 5}}),
    ("greedy + draft (itself)", {"speculative": {"method": "draft", "model": MODEL, "num_speculative_tokens": 3}}),
]
# a long shared system prompt (instructions and a glossary), then a short question: >= 80% of the prompt
SHARED_SYSTEM = " ".join(
    [
        "You answer questions for the staff of a small museum. Keep answers short, polite and factual.",
        "Use the glossary below when a question uses one of its words.",
        *(
            f"Glossary entry {i}: the {w} gallery holds objects from the {w} collection; ask at desk {i}."
            for i, w in enumerate(["north", "south", "east", "west", "river", "garden", "tower", "harbour"], 1)
        ),
    ]
)


def timed(gen: TransformersGenerator, messages: list[dict[str, str]], decoding: dict[str, Any]) -> dict[str, Any]:
    """Run once: total seconds, seconds to the first streamed piece, generated tokens."""
    first: list[float] = []
    started = time.perf_counter()
    out = gen.run(messages, decoding, on_token=lambda piece: first.append(time.perf_counter()) if not first else None)
    total = time.perf_counter() - started
    return {
        "total": total,
        "ttft": (first[0] - started) if first else total,
        "tokens": out["usage"]["completion_tokens"],
    }


def strategy_rows(gen: TransformersGenerator, max_tokens: int, repeats: int) -> list[list[str]]:
    prompt = PromptBuilder().run(QUESTION, [Hit(Chunk(p, p, t, 0, len(t)), 1.0) for p, t in PASSAGES])
    rows = []
    for name, decoding in STRATEGIES:
        runs = [timed(gen, prompt["messages"], {**decoding, "max_tokens": max_tokens}) for _ in range(repeats)]
        total = statistics.median(r["total"] for r in runs)
        tokens = runs[0]["tokens"]
        ttft = statistics.median(r["ttft"] for r in runs)
        rows.append([name, str(tokens), f"{total:.2f}", f"{tokens / total:.1f}", f"{ttft:.2f}"])
        print(f"{name}: {tokens} tokens, {total:.2f} s, TTFT {ttft:.2f} s", flush=True)
    return rows


def prefix_rows(gen: TransformersGenerator, repeats: int) -> list[list[str]]:
    messages = [
        {"role": "system", "content": SHARED_SYSTEM},
        {"role": "user", "content": "Where is the river gallery?"},
    ]
    tokenizer = gen._tokenizer
    prompt = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    shared = len(tokenizer.apply_chat_template(messages[:1], tokenize=True)["input_ids"])
    gen._prefixes.clear()
    cold = timed(gen, messages, {"max_tokens": 1, "prefix_caching": True})["ttft"]  # computes and stores the prefix
    plain, cached = [], []
    for _ in range(repeats):  # interleaved, so load on the machine hits both alike
        plain.append(timed(gen, messages, {"max_tokens": 1})["ttft"])
        cached.append(timed(gen, messages, {"max_tokens": 1, "prefix_caching": True})["ttft"])
    without, with_cache = statistics.median(plain), statistics.median(cached)
    print(f"prefix {shared}/{prompt} tokens: TTFT {without:.3f} s without, {with_cache:.3f} s cached", flush=True)
    return [
        ["prompt tokens (shared system prefix)", f"{prompt} ({shared}, {shared / prompt:.0%})"],
        ["TTFT without prefix caching (median)", f"{without:.3f} s"],
        ["TTFT, first request with prefix caching (computes the prefix)", f"{cold:.3f} s"],
        ["TTFT with the cached prefix (median)", f"{with_cache:.3f} s"],
        ["speed-up (target >= 2x)", f"{without / with_cache:.1f}x"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measure; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--backends", action="store_true", help="transformers against llama.cpp (see the docstring)")
    parser.add_argument("--serve", type=int, default=0, help="with --backends: /v1/answer requests (4 clients)")
    args = parser.parse_args()
    if args.backends:
        from generation_backends import compare_backends

        compare_backends(args.max_tokens, args.repeats, args.threads or 2, args.serve, write=not args.no_write)
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    gen = TransformersGenerator(MODEL, device="cpu")
    gen.warm_up()
    gen.run([{"role": "user", "content": "Hello."}], {"max_tokens": 2})  # first call pays one-off set-up
    strategies = strategy_rows(gen, args.max_tokens, max(1, args.repeats // 2))
    prefix = prefix_rows(gen, args.repeats)
    machine = (
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); load average {load_before:.1f} before "
        f"and {os.getloadavg()[0]:.1f} after the run (other jobs share these cores: figures are noisy, compare "
        "rows of one run only)."
    )
    text = "\n\n".join(
        [
            header(command_line()),
            machine,
            markdown_table(["strategy", "tokens", "time (s)", "tokens/s", "time to first token (s)"], strategies),
            markdown_table(["shared system prompt, 1 token generated", "value"], prefix),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("generation_cpu", text, "Generation on CPU (SmolLM2-135M-Instruct)")


if __name__ == "__main__":
    main()
