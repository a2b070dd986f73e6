"""The transformers backend (SmolLM2-135M-Instruct dequantized to float32) against llama.cpp (the same model's
Q4_1 GGUF file, used as it is) on one RAG prompt of about 1,000 tokens: greedy tokens/s, time to first token,
resident memory of the loaded model, whether the greedy answers are equal, and optionally `/v1/answer` under
4 concurrent clients.

    python benchmarks/generation_cpu.py --backends [--max-tokens 64] [--repeats 3] [--threads 2] [--serve 8]

The prompt is built by the real `PromptBuilder` (answer mode "generate", `max_context_tokens` 900 counted with
the model's tokenizer) from the SQuAD 2.0 paragraphs of one article (`../shared/data/squad2`), the question's own
paragraph first. Each backend runs in its own Python process, with the same number of threads (torch's
intra-op threads; llama.cpp's `n_threads`), so the memory figures are its own: resident set size (VmRSS) after
the backend's imports and before the model loads, and after loading and one short warm-up reply. Each timed
reply starts from an empty cache (`prefix_caching: false`); "tokens/s" counts the tokens after the first
over the time after the first, "time to first token" is from the call to the first streamed piece. When the
greedy answers differ, the transformers process scores both continuations at the first token where they part:
a near tie in float32 that 4-bit weights tip the other way is what quantization does.

`--serve N` indexes this repository's docs, starts `rag serve` with the default pipeline's generator on each
backend (answer mode "generate", `max_tokens` as given) and sends N `/v1/answer` requests from 4 concurrent
clients (the closed loop of `benchmarks/serve_load.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import DATA, REPO, command_line, header, markdown_table, write_section

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
BACKENDS = ("transformers", "llamacpp")
QUESTION_ID = (
    "56e1aff7cd28a01900c67a68"  # "What is generally considered to be the most basic iteration of a Turing machine?"
)


def rag_messages(budget: int = 900) -> list[dict[str, str]]:
    """A real RAG prompt: the question's own SQuAD paragraph, then the other paragraphs of its article."""
    from rag.core.types import Chunk, Hit
    from rag.generate.prompt import PromptBuilder

    questions = [json.loads(line) for line in (DATA / "squad2" / "questions.jsonl").open()]
    question = next(q for q in questions if q["_id"] == QUESTION_ID)
    corpus = [json.loads(line) for line in (DATA / "squad2" / "corpus.jsonl").open()]
    article = question["paragraph"].split("-")[0]
    own = next(p for p in corpus if p["_id"] == question["paragraph"])
    others = [p for p in corpus if p["_id"].startswith(article + "-") and p["_id"] != own["_id"]]
    hits = [
        Hit(Chunk(p["_id"], f"{p['title']}/{p['_id']}.md", p["text"], 0, len(p["text"]), {"title": p["title"]}), 1.0)
        for p in [own, *others]
    ]
    builder = PromptBuilder(max_context_tokens=budget, tokenizer=MODEL, answer_mode="generate")
    builder.warm_up()
    messages: list[dict[str, str]] = builder.run(question["question"], hits)["messages"]
    return messages


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(
    backend: str, messages: list[dict[str, str]], max_tokens: int, repeats: int, threads: int, repack: bool | None
) -> dict:
    """Load `backend` in this process and time it on `messages` (see the module docstring)."""
    if backend == "transformers":
        import torch

        import rag.generate.transformers_generator as module

        torch.set_num_threads(threads)
        version = f"torch {torch.__version__}, transformers {__import__('transformers').__version__}"
    else:
        import llama_cpp

        import rag.generate.llamacpp_generator as module

        version = f"llama-cpp-python {llama_cpp.__version__}"
    before = _rss_mb()
    started = time.perf_counter()
    if backend == "transformers":
        gen: Any = module.TransformersGenerator(MODEL, device="cpu")
    else:
        gen = module.LlamaCppGenerator(MODEL, n_threads=threads, repack_weights=repack)
    gen.warm_up()
    load = time.perf_counter() - started
    gen.run([{"role": "user", "content": "Hello."}], {"max_tokens": 2})  # one-off set-up of the first call
    after = _rss_mb()
    runs = []
    for _ in range(repeats):
        runs.append(_timed(gen, messages, {"max_tokens": max_tokens, "prefix_caching": False}))
        print(f"{backend}: {runs[-1]}", file=sys.stderr, flush=True)
    gen.run(messages, {"max_tokens": 1, "prefix_caching": True})  # fills the cache (transformers: the system part)
    cached = _timed(gen, messages, {"max_tokens": 1, "prefix_caching": True})
    return {
        "backend": backend,
        "version": version,
        "repacked": getattr(gen, "repacked", None),
        "threads": threads,
        "load_s": load,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "runs": runs,
        "ttft_cached_s": cached["ttft"],
        "reply": runs[0]["reply"],
        "prompt_tokens": runs[0]["prompt_tokens"],
        "tokens": runs[0]["tokens"],
        "gen": gen,
    }


def _timed(gen: Any, messages: list[dict[str, str]], decoding: dict[str, Any]) -> dict[str, Any]:
    first: list[float] = []
    started = time.perf_counter()
    out = gen.run(messages, decoding, on_token=lambda piece: first.append(time.perf_counter()) if not first else None)
    total = time.perf_counter() - started
    ttft = (first[0] - started) if first else total
    tokens = out["usage"]["completion_tokens"]
    return {
        "total": total,
        "ttft": ttft,
        "tokens": tokens,
        "decode_tps": (tokens - 1) / (total - ttft) if tokens > 1 and total > ttft else float("nan"),
        "prompt_tokens": out["usage"]["prompt_tokens"],
        "reply": out["reply"],
    }


def divergence(gen: Any, messages: list[dict[str, str]], ours: str, theirs: str) -> dict[str, Any] | None:
    """Where two greedy replies part, scored by the float32 transformers model: None when they are equal."""
    import torch

    tokenizer, model = gen._tokenizer, gen._model
    a = tokenizer(ours, add_special_tokens=False)["input_ids"]
    b = tokenizer(theirs, add_special_tokens=False)["input_ids"]
    k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if k == len(a) == len(b):
        return None
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + a[:k]])).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    out: dict[str, Any] = {"token": k, "common": tokenizer.decode(a[:k])}
    for name, ids in (("transformers", a), ("llamacpp", b)):
        if k < len(ids):
            out[name] = {
                "text": tokenizer.decode([ids[k]]),
                "logit": float(logits[ids[k]]),
                "p": float(probs[ids[k]]),
                "rank": int((logits > logits[ids[k]]).sum()) + 1,
            }
    return out


def _run_worker(backend: str, messages_file: Path, args: list[str], theirs: str | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", backend, "--messages", str(messages_file), *args]
    if theirs is not None:
        command += ["--other-reply", theirs]
    done = subprocess.run(command, cwd=Path(__file__).parent, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr[-3000:])
    if done.returncode != 0:
        raise SystemExit(f"the {backend} worker failed ({done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def compare_backends(max_tokens: int, repeats: int, threads: int, serve: int, write: bool = True) -> None:
    """Run the workers, print the side-by-side table and write it into docs/benchmarks.md.

    llama.cpp runs twice: with the weights as stored, and with its repacked (AMX) layouts where they run here.
    """
    from rag.generate.llamacpp_repack import repacked_kernels_fail
    from rag.runtime.models import packaged_gguf

    load_before = os.getloadavg()[0]
    messages = rag_messages()
    gguf = packaged_gguf(MODEL)
    layouts = repacked_kernels_fail(gguf) if gguf is not None else "the packaged GGUF is not installed"
    work = Path(tempfile.mkdtemp(prefix="generation-backends-"))
    try:
        messages_file = work / "messages.json"
        messages_file.write_text(json.dumps(messages))
        common = ["--max-tokens", str(max_tokens), "--repeats", str(repeats), "--threads", str(threads)]
        llamas = [_run_worker("llamacpp", messages_file, [*common, "--repack", "off"])]
        if layouts is None:
            llamas.append(_run_worker("llamacpp", messages_file, [*common, "--repack", "on"]))
        torch_ = _run_worker("transformers", messages_file, common, theirs=llamas[-1]["reply"])
        served = _serve_rows(serve, max_tokens, threads, work) if serve else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = _report(torch_, llamas, layouts, served, max_tokens, repeats, threads, load_before)
    print(text)
    if write:
        write_section("generation_cpu_backends", text, "Generation on CPU: transformers against llama.cpp")


def _report(
    torch_: dict,
    llamas: list[dict],
    layouts: str | None,
    served: list[list[str]],
    max_tokens: int,
    repeats: int,
    threads: int,
    load: float,
) -> str:
    def median(result: dict, key: str) -> float:
        return statistics.median(run[key] for run in result["runs"])

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.{2 if b / a >= 0.1 else 4}f}x"

    def memory(result: dict) -> float:
        return float(result["rss_after_mb"] - result["rss_before_mb"])

    measures: list[tuple[str, Any, str]] = [
        ("greedy tokens/s (after the first token, median)", lambda r: median(r, "decode_tps"), ">= 5x"),
        ("greedy, whole reply (s, median)", lambda r: median(r, "total"), ""),
        ("time to first token (s, median, empty cache)", lambda r: median(r, "ttft"), "<= 0.5x"),
        ("time to first token, same prompt again with prefix caching (s)", lambda r: r["ttft_cached_s"],
         "transformers caches the system message only"),
        ("resident memory of the loaded model (MB: RSS after load - before)", memory, "<= 0.5x"),
        ("resident memory of the whole process after load (MB)", lambda r: r["rss_after_mb"], ""),
    ]  # fmt: skip
    rows = [
        ["prompt tokens / generated tokens",
         *(f"{r['prompt_tokens']} / {r['tokens']}" for r in [torch_, *llamas]), *([""] * len(llamas)), "same prompt"],
    ]  # fmt: skip
    for name, value, target in measures:
        base = value(torch_)
        digits = 3 if "prefix caching" in name else (0 if "MB" in name else 2)
        cells = [f"{value(r):.{digits}f}" for r in [torch_, *llamas]]
        rows.append([name, *cells, *(ratio(base, value(r)) for r in llamas), target])
    rows.append(["model load (s)", *(f"{r['load_s']:.2f}" for r in [torch_, *llamas]), *([""] * len(llamas)), ""])
    equal = [torch_["reply"] == r["reply"] for r in llamas]
    rows.append(
        ["greedy answers equal", *([""] * (1 + len(llamas))), *("yes" if e else "no" for e in equal),
         "equal, or the difference explained"]
    )  # fmt: skip
    names = [f"llama.cpp (Q4_1, {'repacked for AMX' if r['repacked'] else 'as stored'})" for r in llamas]
    kept = "run" if layouts is None else f"not run: {layouts}"
    parts = [
        header(command_line()),
        f"{torch_['version']} (float32, dequantized from the GGUF); {llamas[0]['version']} (the Q4_1 GGUF, as stored "
        f"and in llama.cpp's repacked layouts, {kept}); {threads} thread(s) each, each in its own process; "
        f"{max_tokens} tokens at most, {repeats} timed replies each; load average {load:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after (other jobs share these cores: compare the columns of one run).",
        markdown_table(
            ["measure", "transformers (fp32)", *names, *(f"{n} / transformers" for n in names), "target"], rows
        ),
    ]
    replies = dict.fromkeys([torch_["reply"], *(r["reply"] for r in llamas)])
    if len(replies) == 1:
        parts.append(f"All: {torch_['reply']!r}")
    else:
        named = zip(["transformers", *names], [torch_, *llamas], strict=True)
        parts.append("\n\n".join(f"{n}: {r['reply']!r}" for n, r in named))
    split = torch_.get("divergence")
    if split:
        sides = ", ".join(
            f"{name} chose {split[name]['text']!r} (float32 logit {split[name]['logit']:.2f}, "
            f"p {split[name]['p']:.3f}, rank {split[name]['rank']})"
            for name in BACKENDS
            if name in split
        )
        parts.append(f"Against {names[-1]}, they part at generated token {split['token']} "
                     f"(after {split['common']!r}): {sides}.")  # fmt: skip
    if served:
        parts.append(
            markdown_table(["`/v1/answer`, 4 clients", "requests", "requests/s", "p50 (ms)", "p99 (ms)"], served)
        )
    return "\n\n".join(parts)


def _serve_rows(total: int, max_tokens: int, threads: int, work: Path) -> list[list[str]]:
    """`/v1/answer` with 4 concurrent clients against `rag serve`, once per backend."""
    import yaml
    from serve_load import QUESTIONS, closed_loop, free_port, row, start_server

    from rag.api import RAG

    corpus = work / "corpus"
    corpus.mkdir()
    for doc in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]:
        shutil.copy(doc, corpus / doc.name)
    RAG(work / "bench", "default").index(corpus)
    default = yaml.safe_load((REPO / "pipelines" / "default.yaml").read_text())
    bodies = [{"question": q, "top_k": 3, "answer_mode": "generate", "max_tokens": max_tokens} for q in QUESTIONS]
    rows = []
    for backend, init in (
        ("transformers", {"model": MODEL, "device": "cpu"}),
        ("llamacpp", {"model": MODEL, "n_threads": threads}),
    ):
        data = json.loads(json.dumps(default))
        generator = data["components"]["generator"]
        generator["type"] = "TransformersGenerator" if backend == "transformers" else "LlamaCppGenerator"
        generator["init"] = {**init, "decoding": generator["init"].get("decoding", {})}
        path = work / f"{backend}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        port = free_port()
        server = start_server(work, str(path), port, threads)
        try:
            latencies, elapsed = asyncio.run(closed_loop(port, "/v1/answer", bodies, 4, None, total))
        finally:
            server.terminate()
            server.wait(30)
        rows.append([backend, *row("", 4, latencies, elapsed)[2:]])
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="one backend's measurements (run by generation_cpu.py --backends)")
    parser.add_argument("--worker", choices=BACKENDS, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--other-reply", default=None, help="the other backend's greedy reply, to find the split")
    parser.add_argument("--repack", choices=("auto", "on", "off"), default="auto", help="llama.cpp's repack_weights")
    args = parser.parse_args()
    messages = json.loads(args.messages.read_text())
    repack = {"auto": None, "on": True, "off": False}[args.repack]
    result = worker(args.worker, messages, args.max_tokens, args.repeats, args.threads, repack)
    gen = result.pop("gen")
    if args.other_reply is not None and args.worker == "transformers":
        result["divergence"] = divergence(gen, messages, result["reply"], args.other_reply)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
