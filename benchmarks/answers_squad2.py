"""Answers on squad2 (report split): the answer modes side by side, against the default pipeline before them.

    python benchmarks/answers_squad2.py [--limit 60] [--runs DIR] [--no-write]

Runs three `rag eval-answers` commands on the report split of ../shared/data/squad2 (articles 7-12; the shipped
calibration was fit on articles 1-6) and keeps their JSON in `--runs` (default ~/.cache/rag/eval/answers-squad2),
reusing a kept run instead of answering again:

1. every report question in extractive mode (the default pipeline's mode: no LLM runs, so all 2,144 are cheap);
2. `--limit` questions spread over the split in each of extractive, grounded and generate mode;
3. the same questions with the default pipeline as it was before answer modes (commit 8d23d3d: SmolLM2 writes,
   markers or word overlap cite, nothing abstains), read from git.

The table goes into docs/benchmarks.md between `<!-- answers_squad2 -->` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import DATA, command_line, header, markdown_table, write_section

from rag.runtime.cache import cache_dir

BEFORE_COMMIT = "8d23d3d"
ROWS = (
    ("contains_gold", "answerable: a gold answer is in the answer", "≥ 0.60"),
    ("citation_holds_gold", "answerable: a cited passage holds a gold answer", "≥ 0.75"),
    ("false_abstention", "answerable: abstained", "≤ 0.15"),
    ("abstention", "unanswerable: abstained", "≥ 0.70"),
    ("faithfulness", "answer sentences supported by what they cite (lexical judge)", "≥ 0.95"),
    ("own_paragraph_retrieved", "answerable: own paragraph among the passages", ""),
    ("exact_match", "answerable: answer = a gold answer", ""),
    ("token_f1", "answerable: token F1, best gold answer", ""),
)


def run(args: list[str], save: Path) -> tuple[Any, str]:
    """The JSON of `rag eval-answers ARGS` (kept in `save`, reused when there), and the command as shown."""
    shown = "rag eval-answers " + " ".join(args)
    if save.is_file():
        print(f"reusing {save} for: {shown}", flush=True)
        return json.loads(save.read_text()), shown
    print(f"running: {shown}", flush=True)
    rag = Path(sys.executable).parent / "rag"
    done = subprocess.run([str(rag), "eval-answers", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shown} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    save.write_text(done.stdout)
    return json.loads(done.stdout), shown


def before_pipeline(folder: Path) -> Path:
    """The default pipeline of commit `BEFORE_COMMIT`, renamed default-before, written into `folder`."""
    text = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:pipelines/default.yaml"], capture_output=True, text=True, check=True
    ).stdout
    path = folder / "default-before.yaml"
    path.write_text(text.replace("name: default\n", "name: default-before\n", 1))
    return path


def table(columns: list[tuple[str, dict[str, Any]]], commands: list[str], limit: int) -> str:
    rows = []
    for key, meaning, target in ROWS:
        values = ["n/a" if data[key] is None else f"{data[key]:.3f}" for _, data in columns]
        rows.append([key, *values, target, meaning])
    rows.append(
        [
            "latency p50 / p95",
            *(f"{d['latency_ms']['p50'] / 1000:.2f} / {d['latency_ms']['p95'] / 1000:.2f} s" for _, d in columns),
            "≤ 3 s extractive, ≤ 6 s grounded",
            "one question, warm, 2 cores",
        ]
    )
    full = columns[-1][1]
    sample = columns[0][1]
    return "\n\n".join(
        [
            header(command_line()),
            "Commands:\n\n" + "\n".join(f"    {c}" for c in commands),
            f"squad2 report split (articles 7-12): all {full['questions']} questions ({full['answerable']} "
            f"answerable) in the last column, the same {limit} spread questions ({sample['answerable']} answerable) "
            "in the others. Generation: SmolLM2-135M-Instruct through transformers (fp32) on the CPU, greedy, "
            "at most 96 tokens; the CPU engine of the quantized-weights issue has not landed.",
            markdown_table(["metric", *(name for name, _ in columns), "target", "meaning"], rows),
            "Answers written by each mode (the rest abstained): "
            + "; ".join(f"{name}: {_used(data)}" for name, data in columns)
            + ".",
        ]
    )


def _used(data: dict[str, Any]) -> str:
    used = data.get("modes_used")
    if used is None:
        return "not recorded"
    return ", ".join(f"{count} {mode}" for mode, count in sorted(used.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATA / "squad2")
    parser.add_argument("--limit", type=int, default=60, help="questions for the modes that generate")
    parser.add_argument("--runs", type=Path, default=cache_dir() / "eval" / "answers-squad2")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    dataset = os.path.relpath(args.dataset)
    limit = ["--limit", str(args.limit), "--json"]
    modes = ["--answer-mode", "extractive", "--answer-mode", "grounded", "--answer-mode", "generate"]
    before = before_pipeline(args.runs)
    runs = [
        run([dataset, "--pipeline", str(before), *limit], args.runs / f"before-{args.limit}.json"),
        run([dataset, *modes, *limit], args.runs / f"modes-{args.limit}.json"),
        run([dataset, "--answer-mode", "extractive", "--json"], args.runs / "extractive-all.json"),
    ]
    reports = runs[1][0]["reports"]
    columns = [
        (f"before ({BEFORE_COMMIT})", runs[0][0]),
        *((report["answer_mode"], report) for report in reports),
        ("extractive, whole split", runs[2][0]),
    ]
    text = table(columns, [shown for _, shown in runs], args.limit)
    print(text)
    if not args.no_write:
        write_section("answers_squad2", text, "Answers on squad2")


if __name__ == "__main__":
    main()
