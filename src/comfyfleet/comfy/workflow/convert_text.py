"""Text the editor rewrites when it queues a prompt.

* Dynamic prompts: in STRING widgets declared with `dynamicPrompts`, C-style comments are
  stripped and `{a|b|c}` picks one option at random (nested choices allowed, `\\{` escapes).
* Save nodes' `filename_prefix` (and primitives with "Run widget replace on values") replace
  `%date:yyyy-MM-dd%` with the local date and `%Node.widget%` with a widget value of the node
  whose "Node name for S&R" property, or else title, is `Node`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from comfyfleet.comfy.workflow.convert_js import is_nullish, to_js_string

Chooser = Callable[[Sequence[str]], str]

# JavaScript's `.` stops at every line terminator, not only at "\n".
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//[^\n\r\u2028\u2029]*")
_ESCAPED = re.compile(r"\\([{}|])")


def random_chooser(rng: random.Random | None = None) -> Chooser:
    """Pick like `Math.random()` does: uniformly, fresh each call."""
    source = rng or random.Random()

    def choose(options: Sequence[str]) -> str:
        return options[int(source.random() * len(options))]

    return choose


def process_dynamic_prompt(text: str, choose: Chooser) -> str:
    """Strip comments and resolve `{a|b}` choices (recursively), keeping `\\` escapes."""
    text = _COMMENTS.sub("", text)
    pos = 0
    result: list[str] = []

    def escape() -> str:
        nonlocal pos
        nxt = text[pos] if pos < len(text) else "undefined"
        pos += 1
        return "\\" + nxt

    def choice_block() -> str:
        nonlocal pos
        options: list[str] = []
        choice = ""
        depth = 0
        while pos < len(text):
            char = text[pos]
            pos += 1
            if char == "\\":
                choice += escape()
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                if not depth:
                    break
                depth -= 1
            elif char == "|" and not depth:
                options.append(choice)
                choice = ""
                continue
            choice += char
        options.append(choice)
        return process_dynamic_prompt(choose(options), choose)

    while pos < len(text):
        char = text[pos]
        pos += 1
        if char == "\\":
            result.append(escape())
        elif char == "{":
            result.append(choice_block())
        else:
            result.append(char)
    return _ESCAPED.sub(r"\1", "".join(result))


_DATE_TOKENS = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def format_date(pattern: str, now: datetime) -> str:
    """The editor's tiny date formatter: yyyy yy MM M dd d hh h mm m ss s."""
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "yy":
            return str(now.year)[2:]
        if text == "yyyy":
            return str(now.year)
        if text[0] in parts:
            return str(parts[text[0]]).rjust(len(text), "0")
        return text

    return _DATE_TOKENS.sub(token, pattern)


_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


class NamedNode:
    """What `%Node.widget%` replacement needs to know of a node."""

    def __init__(self, sr_name: Any, title: str, widgets: dict[str, Any]) -> None:
        self.sr_name = sr_name
        self.title = title
        self.widgets = widgets


def apply_text_replacements(text: str, nodes: Iterable[NamedNode], now: datetime) -> str:
    """Replace `%date:…%` and `%Node.widget%` patterns; unknown ones stay as written."""
    all_nodes = list(nodes)

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        split = inner.split(".")
        if len(split) != 2:
            if split[0].startswith("date:"):
                return format_date(split[0][5:], now)
            return match.group(0)
        found = [n for n in all_nodes if n.sr_name == split[0]]
        if not found:
            found = [n for n in all_nodes if n.title == split[0]]
        if not found or split[1] not in found[0].widgets:
            return match.group(0)
        value = found[0].widgets[split[1]]
        shown = "" if is_nullish(value) else to_js_string(value)
        return _UNSAFE.sub("_", shown)

    return re.sub(r"%([^%]+)%", replace, text)
