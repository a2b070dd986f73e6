"""Answer-level evaluation on PubMedQA: runs `rag eval-answers` on the first N test questions and writes the table.

    python benchmarks/answers_pubmedqa.py [--limit 50] [--pipeline default] [--from-json FILE] [--no-write]

The command's JSON is kept (`--save FILE`, default ``~/.cache/rag/eval/answers-PIPELINE-N.json``); `--from-json
FILE` writes the table from a kept run instead of running again. The table goes into docs/benchmarks.md between
`<!-- eval_answers -->` markers, under the command line of this script and of the `rag` command it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import DATA, command_line, header, markdown_table, write_section

from rag.eval.answers import load_pubmedqa
from rag.models import cache_dir

ROWS = (
    ("retrieval_hit_rate", "the question's own abstract is among the passages given to the generator"),
    ("decision_accuracy", "yes / no / maybe read from the answer (first of those words) equals the gold decision"),
    ("undecided", "answers containing none of yes / no / maybe (counted wrong above)"),
    ("token_f1", "SQuAD token F1 against the long answer (the abstract's conclusion)"),
    ("cited", "answers that write a [n] citation marker"),
    ("citation_validity", "of those, answers whose markers all name a passage that was given"),
    ("faithfulness", "judge: geometric-mean probability of the answer's tokens given its cited passage(s)"),
    ("faithfulness_control", "the same judge, the answer against an unrelated abstract"),
)


def run(dataset: Path, pipeline: str, limit: int) -> tuple[dict[str, Any], str]:
    """The JSON of `rag eval-answers`, and the command line that produced it."""
    rag = Path(sys.executable).parent / "rag"
    args = [str(rag), "eval-answers", str(dataset), "--pipeline", pipeline, "--limit", str(limit), "--json"]
    shown = f"rag eval-answers {os.path.relpath(dataset)} --pipeline {pipeline} --limit {limit} --json"
    print(f"running: {shown}", flush=True)
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shown} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), shown


def table(data: dict[str, Any], command: str, dataset: Path) -> str:
    items = load_pubmedqa(dataset).items[: data["questions"]]
    gold = Counter(item.decision for item in items)
    majority, count = gold.most_common(1)[0]
    per_question = data["seconds"] / max(data["questions"], 1)
    mapped = 1.0 - data["undecided"]
    decided = f"{data['decision_accuracy'] / mapped:.3f} were right" if mapped else "there were none"
    rows = [[name, "n/a" if data[name] is None else f"{data[name]:.3f}", meaning] for name, meaning in ROWS]
    return "\n\n".join(
        [
            header(command_line()),
            f"It ran `{command}`: pipeline `{data['pipeline']}` on the first {data['questions']} questions of "
            "the official PubMedQA test split, the 1,000 PQA-L contexts as the corpus; "
            f"faithfulness judge: {data['judge']}. "
            f"{data['seconds']:.0f} s answering and judging ({per_question:.1f} s per question on the shared CPU).",
            markdown_table(["metric", "value", "meaning"], rows),
            f'For scale: always answering "{majority}" would score {count / len(items):.3f} decision accuracy on '
            f"these questions (gold: {', '.join(f'{k} {v}' for k, v in gold.most_common())}); of the answers "
            f"the rule could map, {decided}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATA / "pubmedqa")
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--save", type=Path, default=None, help="where to keep the command's JSON")
    parser.add_argument("--from-json", type=Path, default=None, help="write the table from a saved run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    shown = f"rag eval-answers {os.path.relpath(args.dataset)} --pipeline {args.pipeline} --limit {args.limit} --json"
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        data, shown = run(args.dataset, args.pipeline, args.limit)
        save = args.save or cache_dir() / "eval" / f"answers-{args.pipeline}-{args.limit}.json"
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(data, indent=2))
        print(f"saved {save}")
    text = table(data, shown, args.dataset)
    print(text)
    if not args.no_write:
        write_section("eval_answers", text, "Answer-level evaluation (PubMedQA)")


if __name__ == "__main__":
    main()
