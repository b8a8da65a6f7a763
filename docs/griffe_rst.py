"""A Griffe extension for the API reference: dask-meta's docstrings use reStructuredText
markup, which Markdown would show verbatim or as code. Sphinx roles (:func:`name`) become
code spans, a ``::`` that introduces a literal block becomes ``:``, and definition lists
(a term line, then its indented description) become a bold term and a paragraph. The
docstrings themselves stay as they are in the package."""

from __future__ import annotations

import re
from typing import Any

import griffe

#: :func:`name`, :class:`~module.Name`, :mod:`module` ...
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
#: a paragraph ending in "::" introduces an indented literal block
_LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)
_INDENT = "    "


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    # "~module.Name" shows "Name", as in Sphinx
    return f"`{target.split('.')[-1] if match.group(1) else target}`"


def _definition_lists(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        is_term = (
            line.strip()
            and not line.startswith(" ")
            and not line.rstrip().endswith("::")
            and i + 1 < len(lines)
            and lines[i + 1].startswith(_INDENT)
        )
        if not is_term:
            out.append(line)
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(_INDENT)):
            body.append(lines[i].removeprefix(_INDENT))
            i += 1
        trailing = 0
        while body and not body[-1].strip():
            body.pop()
            trailing += 1
        out += [f"**{line.strip()}**", "", *body, *[""] * trailing]
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    text = _definition_lists(text)
    text = _ROLE.sub(_role, text)
    return _LITERAL.sub(":", text)


class RstMarkup(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
