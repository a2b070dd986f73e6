"""Answer-level evaluation on PubMedQA: runs `rag eval-answers` on the first N test questions and writes the table.

    python benchmarks/answers_pubmedqa.py [--limit 200] [--pipeline default] [--before] [--no-judge] [--no-write]

With `--before`, the default pipeline as it was before answer modes (commit 8d23d3d, read from git) answers the
same questions in a second column. Each command's JSON is kept in ``~/.cache/rag/eval/`` (named by pipeline,
limit and judge) and reused instead of answering again; delete it to rerun. The table goes into
docs/benchmarks.md between `<!-- eval_answers -->` markers, under the command line of this script and of the
`rag` commands it ran.
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
from rag.runtime.cache import cache_dir

ROWS = (
    ("retrieval_hit_rate", "the question's own abstract is among the passages given to the generator"),
    ("abstained", "answers that say the passages do not answer the question"),
    ("decision_accuracy", "yes / no / maybe read from the answer (first of those words) equals the gold decision"),
    ("undecided", "answers containing none of yes / no / maybe (counted wrong above)"),
    ("token_f1", "SQuAD token F1 against the long answer (the abstract's conclusion)"),
    ("cited", "answers that write a [n] citation marker"),
    ("citation_validity", "of those, answers whose markers all name a passage that was given"),
    ("faithfulness", "judge: geometric-mean probability of the answer's tokens given its cited passage(s)"),
    ("faithfulness_control", "the same judge, the answer against an unrelated abstract"),
)


BEFORE_COMMIT = "8d23d3d"


def run(dataset: Path, pipeline: str, limit: int, judge: bool, save: Path) -> tuple[dict[str, Any], str]:
    """The JSON of `rag eval-answers` (kept in `save`, reused when there), and the command line that produced it."""
    options = ["--pipeline", pipeline, "--limit", str(limit), *([] if judge else ["--no-judge"]), "--json"]
    shown = f"rag eval-answers {os.path.relpath(dataset)} {' '.join(options)}"
    if save.is_file():
        print(f"reusing {save} for: {shown}", flush=True)
        return json.loads(save.read_text()), shown
    print(f"running: {shown}", flush=True)
    rag = Path(sys.executable).parent / "rag"
    done = subprocess.run([str(rag), "eval-answers", str(dataset), *options], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shown} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(done.stdout)
    return json.loads(done.stdout), shown


def before_pipeline(folder: Path) -> Path:
    """The default pipeline of commit `BEFORE_COMMIT`, renamed default-before, written into `folder`."""
    text = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:pipelines/default.yaml"], capture_output=True, text=True, check=True
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "default-before.yaml"
    path.write_text(text.replace("name: default\n", "name: default-before\n", 1))
    return path


def table(runs: list[tuple[dict[str, Any], str]], dataset: Path) -> str:
    first = runs[0][0]
    items = load_pubmedqa(dataset).items[: first["questions"]]
    gold = Counter(item.decision for item in items)
    majority, count = gold.most_common(1)[0]
    rows = [
        [name, *("n/a" if data[name] is None else f"{data[name]:.3f}" for data, _ in runs), meaning]
        for name, meaning in ROWS
    ]
    rows.append(["seconds per question", *(f"{d['seconds'] / max(d['questions'], 1):.1f}" for d, _ in runs), ""])
    judge = first["judge"] or "none (--no-judge)"
    return "\n\n".join(
        [
            header(command_line()),
            "Commands:\n\n" + "\n".join(f"    {shown}" for _, shown in runs),
            f"The first {first['questions']} questions of the official PubMedQA test split, the 1,000 PQA-L "
            f"contexts as the corpus; faithfulness judge: {judge}. Seconds are answering and judging, on the "
            "shared CPU.",
            markdown_table(["metric", *(data["pipeline"] for data, _ in runs), "meaning"], rows),
            f'For scale: always answering "{majority}" would score {count / len(items):.3f} decision accuracy on '
            f"these questions (gold: {', '.join(f'{k} {v}' for k, v in gold.most_common())}).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATA / "pubmedqa")
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--before", action="store_true", help="also the default pipeline before answer modes")
    parser.add_argument("--no-judge", action="store_true", help="skip the faithfulness judge")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    kept = cache_dir() / "eval"
    judged = "judged" if not args.no_judge else "unjudged"
    pipelines = [args.pipeline]
    if args.before:
        pipelines.insert(0, str(before_pipeline(kept / "answers-pubmedqa")))
    runs = [
        run(args.dataset, p, args.limit, not args.no_judge, kept / f"answers-{Path(p).stem}-{args.limit}-{judged}.json")
        for p in pipelines
    ]
    text = table(runs, args.dataset)
    print(text)
    if not args.no_write:
        write_section("eval_answers", text, "Answer-level evaluation (PubMedQA)")


if __name__ == "__main__":
    main()
