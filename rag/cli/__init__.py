"""The `rag` command line: index folders, query and ask, evaluate, serve, list and show pipelines.

The CLI owns the terminal: progress bars and tables go to stderr/stdout here, never from the library. With
`--json` a command prints exactly one JSON document on stdout (errors too, as `{"error": {"message", "type"}}`)
and everything else goes to stderr. One module per command (or group of commands); `common` holds what they
share. Commands call the library (`rag.api.RAG` and the evaluation, training and serving entry points).
"""

from __future__ import annotations

import logging
import os

import click

from rag.cli.answers import calibrate_answers_cmd, eval_answers_cmd
from rag.cli.ask import ask_cmd
from rag.cli.evaluate import eval_cmd, train_group, tune_cmd
from rag.cli.index import check_cmd, index_cmd, query_cmd
from rag.cli.pipelines import pipeline_group, pipelines_cmd
from rag.cli.serve import keys_group, mcp_cmd, serve_cmd
from rag.cli.shard import shard_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rag")
def main() -> None:
    """Retrieval-augmented generation: index folders, query them, ask questions."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the CLI draws its own progress
    # a damaged PDF is reported once, by the loader's reason; pypdf's own warnings would go straight to stderr
    logging.getLogger("pypdf").setLevel(logging.ERROR)


for command in (
    index_cmd,
    check_cmd,
    query_cmd,
    ask_cmd,
    eval_cmd,
    tune_cmd,
    eval_answers_cmd,
    calibrate_answers_cmd,
    train_group,
    serve_cmd,
    keys_group,
    mcp_cmd,
    pipelines_cmd,
    pipeline_group,
    shard_group,
):
    main.add_command(command)
