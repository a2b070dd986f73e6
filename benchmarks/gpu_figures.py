"""The GPU paths, run for real on a lent GPU machine: vLLM in process with every decoding option, vLLM served
through the OpenAI protocol, the transformers backend on CUDA, and MiniLM encoding on CUDA.

    python benchmarks/gpu_figures.py vllm   --out DIR   # options checked one by one, then the vLLM figures
    python benchmarks/gpu_figures.py transformers --out DIR   # the transformers backend on CUDA, same prompts
    python benchmarks/gpu_figures.py serve  --out DIR   # `vllm serve` on loopback + OpenAIGenerator
    python benchmarks/gpu_figures.py encode --out DIR [--device cpu] [--limit N]   # MiniLM on SciFact

Every check and figure is recorded in DIR/<section>.json as it completes (a failure is recorded with its
error and the rest still runs) and printed as a table at the end; docs/gpu.md holds what a run gave.
The SciFact corpus is read from --corpus (a corpus.jsonl or .jsonl.gz; default ../shared/data/scifact).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import DATA, markdown_table

from rag.core.types import Chunk, Hit
from rag.generate.prompt import PromptBuilder

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MAX_MODEL_LEN = 8192
SYSTEM = "You answer questions about biomedical studies from the numbered passages only."
ENGINE = {"dtype": "bfloat16", "gpu_memory_utilization": 0.15, "max_model_len": MAX_MODEL_LEN}
NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}


class Recorder:
    """Checks and figures of one section, written to DIR/<section>.json after each one."""

    def __init__(self, out: Path, section: str) -> None:
        self.path = out / f"{section}.json"
        self.results: dict[str, Any] = {"checks": [], "figures": []}
        out.mkdir(parents=True, exist_ok=True)

    def _save(self) -> None:
        self.path.write_text(json.dumps(self.results, indent=1))

    def check(self, name: str, test: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            detail = test()
            ok = detail is not False
        except Exception as exc:  # recorded, and the run goes on
            detail, ok = f"{type(exc).__name__}: {exc}"[:600], False
            traceback.print_exc()
        seconds = time.perf_counter() - started
        self.results["checks"].append({"name": name, "ok": ok, "detail": _short(detail), "seconds": round(seconds, 2)})
        print(f"[{'ok' if ok else 'FAIL'}] {name} ({seconds:.1f} s): {_short(detail)}", flush=True)
        self._save()
        return detail if ok else None

    def figure(self, name: str, value: float | None, unit: str, note: str = "") -> None:
        self.results["figures"].append({"name": name, "value": value, "unit": unit, "note": note})
        print(f"[figure] {name}: {value} {unit} {note}", flush=True)
        self._save()

    def table(self) -> str:
        checks = markdown_table(
            ["check", "ok", "seconds", "detail"],
            [
                [c["name"], "yes" if c["ok"] else "**no**", f"{c['seconds']:.1f}", c["detail"]]
                for c in self.results["checks"]
            ],
        )
        figures = markdown_table(
            ["figure", "value", "unit", "note"],
            [[f["name"], _fmt(f["value"]), f["unit"], f["note"]] for f in self.results["figures"]],
        )
        return checks + "\n\n" + figures


def differs(what: str) -> bool:
    """Fail a comparison check, saying what differed."""
    raise AssertionError(f"{what} differs")


def _short(detail: Any) -> str:
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text.replace("\n", " ").replace("|", "/")[:300]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"


def corpus(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            docs.append(json.loads(line))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def rag_prompts(docs: list[dict[str, str]], count: int, question: str) -> list[list[dict[str, str]]]:
    """`count` grounded prompts, three SciFact abstracts (first 700 characters) as passages each."""
    builder = PromptBuilder(system_prompt=SYSTEM)
    prompts = []
    for i in range(count):
        hits = []
        for rank, doc in enumerate(docs[3 * i : 3 * i + 3]):
            text = doc["text"][:700]
            hits.append(
                Hit(
                    Chunk(doc["_id"], f"{doc['_id']}.txt", text, 0, len(text), {"title": doc["title"]}), 1.0 - rank / 10
                )
            )
        prompts.append(builder.run(question.format(title=docs[3 * i]["title"]), hits)["messages"])
    return prompts


def tokens(results: list[dict[str, Any]]) -> int:
    return sum(r["usage"]["completion_tokens"] for r in results)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


# --- vLLM in process -----------------------------------------------------------------------------------------


def section_vllm(rec: Recorder, docs: list[dict[str, str]]) -> None:
    import torch

    from rag.generate.vllm_generator import VLLMGenerator

    rec.check("torch sees the GPU", lambda: torch.cuda.get_device_name(0))
    batch = rag_prompts(docs, 64, "What does the study '{title}' find? Answer in two sentences with citations.")
    quote = rag_prompts(docs[192:], 16, "Copy the first sentence of passage [1] exactly, word for word.")
    # a long shared system prompt (about 3,000 tokens) and short distinct questions: what prefix caching is for
    glossary = " ".join(f"Term {i}: {d['title']}." for i, d in enumerate(docs[300:420]))
    shared = [
        [
            {"role": "system", "content": SYSTEM + " Glossary: " + glossary},
            {"role": "user", "content": f"Define term {i}."},
        ]
        for i in range(17)
    ]

    base = rec.check(
        "engine: bf16, prefix caching on, CUDA graphs",
        lambda: _engine(VLLMGenerator, {"max_tokens": 128, "prefix_caching": True}),
    )
    if base is None:
        return
    gen = base["gen"]
    msgs = batch[0]
    greedy = rec.check("greedy", lambda: gen.run(msgs))
    rec.check("greedy is deterministic", lambda: gen.run(msgs) == greedy or differs("second reply"))
    one = rec.check("sample, seed 1", lambda: gen.run(msgs, {"strategy": "sample", "temperature": 0.8, "seed": 1}))
    rec.check(
        "same seed gives the same sample",
        lambda: gen.run(msgs, {"strategy": "sample", "temperature": 0.8, "seed": 1}) == one or differs("second sample"),
    )
    rec.check(
        "another seed gives another sample",
        lambda: (
            gen.run(msgs, {"strategy": "sample", "temperature": 0.8, "seed": 2})["reply"] != one["reply"]
            or differs("nothing")
        ),
    )
    rec.check(
        "top_k 20, top_p 0.9, min_p 0.05",
        lambda: gen.run(msgs, {"strategy": "sample", "top_k": 20, "top_p": 0.9, "min_p": 0.05, "seed": 3})["reply"][
            :80
        ],
    )
    rec.check(
        "repetition 1.3, presence 0.5, frequency 0.5 penalties",
        lambda: gen.run(msgs, {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.5})["reply"][
            :80
        ],
    )

    def stop() -> Any:
        words = greedy["reply"].split()
        word = words[min(3, len(words) - 1)]
        out = gen.run(msgs, {"stop": [word]})
        return {"stop": word, "reply": out["reply"]} if word not in out["reply"] else False

    rec.check("stop string ends the reply before it", stop)
    rec.check(
        "min_tokens 60 with max_tokens 64",
        lambda: (
            60 <= gen.run(msgs, {"min_tokens": 60, "max_tokens": 64})["usage"]["completion_tokens"] <= 64
            or differs("token count")
        ),
    )
    rec.check(
        "logprobs 2",
        lambda: gen.run(msgs, {"strategy": "sample", "n": 2, "seed": 4, "logprobs": 2})["candidates"],
    )
    rec.check(
        "beam search, 4 beams, 2 returned",
        lambda: [c["score"] for c in gen.run(msgs, {"strategy": "beam", "num_beams": 4, "n": 2})["candidates"]],
    )
    rec.check(
        "best-of-4 by mean log-probability",
        lambda: [c["score"] for c in gen.run(msgs, {"strategy": "best_of_n", "best_of": 4, "seed": 5})["candidates"]],
    )
    rec.check(
        "structured output (JSON schema)",
        lambda: json.loads(
            gen.run(
                [{"role": "user", "content": "Give a JSON object with a field answer that is yes or no."}],
                {
                    "json_schema": {
                        "type": "object",
                        "properties": {"answer": {"enum": ["yes", "no"]}},
                        "required": ["answer"],
                    }
                },
            )["reply"]
        ),
    )
    rec.check(
        "a batch equals the single replies",
        lambda: gen.generate_batch(batch[:8]) == [gen.run(m) for m in batch[:8]] or differs("a reply"),
    )
    rec.check(
        "streaming hands the reply over",
        lambda: "".join(gen.stream(msgs)).strip() == greedy["reply"] or differs("streamed text"),
    )

    # figures: throughput of a batch of 64, single-stream speed
    gen.generate_batch(batch[:4])
    out, seconds = timed(lambda: gen.generate_batch(batch))
    rec.figure(
        "vLLM: batch of 64 RAG prompts", tokens(out) / seconds, "tokens/s", f"{tokens(out)} tokens in {seconds:.2f} s"
    )
    singles = [timed(lambda m=m: gen.run(m)) for m in batch[:8]]
    rec.figure(
        "vLLM: single stream",
        sum(o["usage"]["completion_tokens"] for o, _ in singles) / sum(s for _, s in singles),
        "tokens/s",
        "8 prompts one after another",
    )
    cached_ttft = _ttft(gen, shared)
    nocache = rec.check(
        "engine: prefix caching off", lambda: _engine(VLLMGenerator, {"max_tokens": 128, "prefix_caching": False})
    )
    if nocache is not None:
        plain_ttft = _ttft(nocache["gen"], shared)
        rec.figure("vLLM: time to first token, prefix caching on", cached_ttft * 1000, "ms", _ttft_note(gen, shared))
        rec.figure("vLLM: time to first token, prefix caching off", plain_ttft * 1000, "ms", "same prompts")
        rec.figure("vLLM: prefix caching TTFT speed-up", plain_ttft / cached_ttft, "x", "off / on")
        rec.check(
            "prefix caching gives the output without it",
            lambda: gen.run(shared[3]) == nocache["gen"].run(shared[3]) or differs("the reply"),
        )
        nocache["gen"] = None

    spec = rec.check(
        "engine: n-gram speculative decoding", lambda: _engine(VLLMGenerator, {"max_tokens": 128, "speculative": NGRAM})
    )
    if spec is not None:
        sgen = spec["gen"]
        plain = [timed(lambda m=m: gen.run(m)) for m in quote]
        fast = [timed(lambda m=m: sgen.run(m)) for m in quote]
        same = sum(a == b for (a, _), (b, _) in zip(plain, fast, strict=True))
        rec.check(
            "n-gram speculative output equals greedy",
            lambda: same == len(quote) or differs(f"{len(quote) - same}/{len(quote)} replies"),
        )
        rate = lambda runs: sum(o["usage"]["completion_tokens"] for o, _ in runs) / sum(s for _, s in runs)  # noqa: E731
        rec.figure("vLLM: greedy, answers quoting a passage", rate(plain), "tokens/s", "16 prompts, single stream")
        rec.figure("vLLM: + n-gram speculative decoding", rate(fast), "tokens/s", f"{NGRAM}")
        rec.figure("vLLM: n-gram speed-up", rate(fast) / rate(plain), "x", f"{same}/16 replies equal to greedy")
        spec["gen"] = None

    rec.check(
        "engine: fp8 weights (quantization='fp8')",
        lambda: _engine(VLLMGenerator, {"max_tokens": 32, "quantization": "fp8"})["gen"].run(msgs)["reply"][:80],
    )


def section_transformers(rec: Recorder, docs: list[dict[str, str]]) -> None:
    """The transformers backend on the same GPU, with the vLLM section's prompts and dtype."""
    from rag.generate.transformers_generator import TransformersGenerator

    batch = rag_prompts(docs, 64, "What does the study '{title}' find? Answer in two sentences with citations.")
    hf = rec.check(
        "transformers backend on CUDA (bf16)",
        lambda: {
            "gen": _warm(TransformersGenerator(MODEL, device="cuda", dtype="bfloat16", decoding={"max_tokens": 128}))
        },
    )
    if hf is not None:
        tgen = hf["gen"]
        tgen.generate_batch(batch[:4])
        out, seconds = timed(lambda: tgen.generate_batch(batch))
        rec.figure(
            "transformers: batch of 64 RAG prompts",
            tokens(out) / seconds,
            "tokens/s",
            f"{tokens(out)} tokens in {seconds:.2f} s",
        )
        singles = [timed(lambda m=m: tgen.run(m)) for m in batch[:8]]
        rec.figure(
            "transformers: single stream",
            sum(o["usage"]["completion_tokens"] for o, _ in singles) / sum(s for _, s in singles),
            "tokens/s",
            "8 prompts one after another",
        )


def _engine(cls: Any, decoding: dict[str, Any]) -> dict[str, Any]:
    gen = cls(MODEL, decoding=decoding, **ENGINE)
    _, seconds = timed(gen.warm_up)
    return {"gen": gen, "start_seconds": round(seconds, 1)}


def _warm(gen: Any) -> Any:
    gen.warm_up()
    return gen


def _ttft(gen: Any, shared: list[list[dict[str, str]]]) -> float:
    """Median seconds to produce one token, for 16 distinct questions after one that fills the cache."""
    gen.run(shared[0], {"max_tokens": 1})
    return statistics.median(timed(lambda m=m: gen.run(m, {"max_tokens": 1}))[1] for m in shared[1:])


def _ttft_note(gen: Any, shared: list[list[dict[str, str]]]) -> str:
    prompt = gen._prompt(shared[1])["prompt_token_ids"]
    return f"prompt {len(prompt)} tokens, shared system prompt; max_tokens 1; median of 16"


# --- vLLM served ---------------------------------------------------------------------------------------------


def section_serve(rec: Recorder, docs: list[dict[str, str]], port: int = 8011) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rag.generate.openai_generator import OpenAIGenerator
    from rag.runtime.models import resolve_model

    folder = resolve_model(MODEL)
    command = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(folder), "--served-model-name", "smol",
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--max-model-len", str(MAX_MODEL_LEN),
        "--gpu-memory-utilization", "0.3",
    ]  # fmt: skip
    log = open(rec.path.with_name("vllm-serve.log"), "w")  # noqa: SIM115
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        rec.check("vllm serve answers /health", lambda: _wait_healthy(f"http://127.0.0.1:{port}/health", server))
        url = f"http://127.0.0.1:{port}/v1"
        chat = OpenAIGenerator(model="smol", base_url=url, decoding={"max_tokens": 96})
        msgs = rag_prompts(docs, 1, "What does the study '{title}' find?")[0]
        greedy = rec.check("chat, greedy", lambda: chat.run(msgs))
        rec.check(
            "chat, greedy again is equal",
            lambda: chat.run(msgs)["reply"] == greedy["reply"] or differs("streamed text"),
        )
        rec.check(
            "stream: pieces join to the reply",
            lambda: (lambda p: (len(p) > 1 and "".join(p).strip() == greedy["reply"]) or f"{len(p)} pieces")(
                list(chat.stream(msgs))
            ),
        )
        rec.check(
            "extra_body: top_k, min_p, repetition_penalty, seed",
            lambda: chat.run(
                msgs, {"strategy": "sample", "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.2, "seed": 1}
            )["reply"][:80],
        )
        rec.check(
            "beam search through the server", lambda: chat.run(msgs, {"strategy": "beam", "num_beams": 3})["reply"][:80]
        )
        rec.check(
            "best-of-3 through the server",
            lambda: chat.run(msgs, {"strategy": "best_of_n", "best_of": 3, "seed": 2})["candidates"],
        )
        rec.check("stop string", lambda: chat.run(msgs, {"stop": ["."]})["reply"][:120])
        completions = OpenAIGenerator(model="smol", base_url=url, mode="completions", decoding={"max_tokens": 32})
        rec.check("completions mode", lambda: completions.run(msgs)["reply"][:80])
        rec.check(
            "a rejected parameter is a clear error",
            lambda: _raises(lambda: chat.run(msgs, {"max_tokens": MAX_MODEL_LEN * 2})),
        )
        batch = rag_prompts(docs, 64, "What does the study '{title}' find? Answer in two sentences with citations.")
        chat.run(batch[0])
        with ThreadPoolExecutor(64) as pool:
            out, seconds = timed(lambda: list(pool.map(lambda m: chat.run(m, {"max_tokens": 128}), batch)))
        rec.figure(
            "vllm serve: 64 concurrent chat requests",
            tokens(out) / seconds,
            "tokens/s",
            f"{seconds:.2f} s; continuous batching",
        )
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 300) -> str:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {server.returncode}; see vllm-serve.log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return f"healthy after {time.perf_counter() - started:.0f} s"
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


def _raises(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"  # a string: recorded as ok, the detail says what happened


# --- MiniLM encoding -----------------------------------------------------------------------------------------


def section_encode(rec: Recorder, docs: list[dict[str, str]], device: str) -> None:
    from rag.embed.dense import SentenceTransformerEmbedder

    texts = [f"{d['title']}\n{d['text']}" for d in docs]
    embedder = SentenceTransformerEmbedder(device=device, batch_size=128 if device == "cuda" else 32)
    rec.check(f"MiniLM loads on {device}", lambda: embedder.dimension)
    embedder.encode_documents(texts[:64])
    vectors, seconds = timed(lambda: embedder.encode_documents(texts))
    rec.figure(
        f"MiniLM on {device}: SciFact documents",
        len(texts) / seconds,
        "docs/s",
        f"{len(texts)} docs in {seconds:.1f} s",
    )
    if device == "cuda":
        cpu = SentenceTransformerEmbedder(device="cpu")
        sample = texts[:32]
        diff = float(abs(cpu.encode_documents(sample) - vectors[:32]).max())
        rec.check(
            "CUDA vectors equal CPU vectors (max abs difference < 1e-3)",
            lambda: f"max |diff| {diff:.2e}" if diff < 1e-3 else differs(f"{diff:.2e}"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["vllm", "transformers", "serve", "encode"])
    parser.add_argument("--out", type=Path, default=Path("gpu-results"))
    parser.add_argument("--corpus", type=Path, default=DATA / "scifact" / "corpus.jsonl")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--limit", type=int, default=None, help="documents to encode (default: all)")
    args = parser.parse_args()
    rec = Recorder(args.out, args.section if args.section != "encode" else f"encode-{args.device}")
    if args.section == "vllm":
        section_vllm(rec, corpus(args.corpus, 600))
    elif args.section == "transformers":
        section_transformers(rec, corpus(args.corpus, 600))
    elif args.section == "serve":
        section_serve(rec, corpus(args.corpus, 600))
    else:
        section_encode(rec, corpus(args.corpus, args.limit), args.device)
    table = rec.table()
    print(table)
    rec.path.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
