"""OpenVINO GenAI against transformers on the CPU: time to first token of a ~1,000-token RAG prompt and decoding speed.

OpenVINO runs only exported models, and its exporter (`optimum-intel`) pins other versions of transformers and
torchvision than this project, so it gets its own virtual environment; this script imports nothing from `rag`:

    python -m venv /tmp/ovenv
    /tmp/ovenv/bin/pip install torch==2.13.0 openvino-genai "optimum-intel[openvino]" nncf
    /tmp/ovenv/bin/pip uninstall -y torchvision        # built for another torch; the exporter runs without it
    /tmp/ovenv/bin/optimum-cli export openvino --model ~/.cache/rag/models/SmolLM2-135M-Instruct \\
        --task text-generation-with-past --weight-format int8 /tmp/ov-smol-int8
    /tmp/ovenv/bin/python benchmarks/generation_openvino.py --engine openvino --model /tmp/ov-smol-int8 --threads 1
    .venv/bin/python benchmarks/generation_openvino.py --engine transformers \\
        --model ~/.cache/rag/models/SmolLM2-135M-Instruct --threads 1

Each run answers a few prompts that differ from their first words on (so no prefix cache helps): the passages are
the first 960 tokens of docs/indexing.md, greedy, 64 tokens at most. Printed: time to first token, decoding
tokens/s after it, and the start of the last answer. The results are in docs/generation.md ("Choosing the engine").
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "indexing.md"


def prompts(tokenizer_dir: str, count: int) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    passages = tokenizer.decode(tokenizer(DOCS.read_text())["input_ids"][:960])
    return [
        tokenizer.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": f"Answer from the passages ({i}).\n\n{passages}\n\nQuestion: How are files re-indexed?",
                }
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(count)
    ]


def openvino_runs(model: str, threads: int, texts: list[str]) -> list[tuple[float, float, str]]:
    import openvino_genai as og

    pipe = og.LLMPipeline(model, "CPU", INFERENCE_NUM_THREADS=threads)
    config = og.GenerationConfig()
    config.max_new_tokens, config.do_sample = 64, False
    results = []
    for text in texts:
        pieces: list[tuple[float, str]] = []

        def streamer(piece: str, pieces: list[tuple[float, str]] = pieces) -> og.StreamingStatus:
            pieces.append((time.perf_counter(), piece))
            return og.StreamingStatus.RUNNING

        started = time.perf_counter()
        answer = pipe.generate(text, config, streamer)
        ended = time.perf_counter()
        tokens = pipe.get_tokenizer().encode(answer).input_ids.shape[1]
        results.append((pieces[0][0] - started, (tokens - 1) / (ended - pieces[0][0]), answer))
    return results


def transformers_runs(model: str, threads: int, texts: list[str]) -> list[tuple[float, float, str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    results = []
    for text in texts:
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        started = time.perf_counter()
        settings = {**inputs, "max_new_tokens": 64, "do_sample": False, "streamer": streamer}
        worker = threading.Thread(target=lm.generate, kwargs=settings)
        worker.start()
        first, answer = None, ""
        for piece in streamer:
            if first is None and piece:
                first = time.perf_counter()
            answer += piece
        worker.join()
        ended = time.perf_counter()
        assert first is not None
        tokens = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        results.append((first - started, (tokens - 1) / (ended - first), answer))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("openvino", "transformers"), required=True)
    parser.add_argument("--model", required=True, help="an exported OpenVINO folder, or a transformers checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=4)
    args = parser.parse_args()
    texts = prompts(str(Path(args.model).expanduser()), args.prompts)
    run = openvino_runs if args.engine == "openvino" else transformers_runs
    results = run(str(Path(args.model).expanduser()), args.threads, texts)
    for first, rate, _ in results:
        print(f"{args.engine} threads {args.threads}: first token {first:.3f} s, decoding {rate:.1f} tokens/s")
    print("answer:", repr(results[-1][2][:150]))


if __name__ == "__main__":
    main()
