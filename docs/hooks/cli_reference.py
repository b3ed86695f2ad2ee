"""mkdocs hook: render ``conchshell ... --help`` for every subcommand into the CLI page.

The page holds the marker ``<!-- cli-reference -->``; this hook replaces it with
one section per command, taken from :func:`conchshell.cli.build_parser`, so the
reference can never fall behind the parser.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

MARKER = "<!-- cli-reference -->"


def iter_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Yield ``(words after 'conchshell', parser)`` for the parser and every subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_commands(sub, (*path, name))


def render() -> str:
    """The markdown of the whole reference: a heading and a help block per command."""
    from conchshell.cli import build_parser

    # A fixed width keeps the rendered help the same on every terminal.
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"
    try:
        parts = []
        for path, parser in iter_commands(build_parser()):
            title = " ".join(("conchshell", *path))
            level = "#" * min(2 + len(path), 4)
            parts.append(f"{level} `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    """mkdocs event: fill the marker of the page that has one."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
