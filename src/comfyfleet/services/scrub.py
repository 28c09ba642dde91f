"""Secret scrubbing of workflow files before they reach a backup repository.

A secret is replaced by a stable placeholder, `<scrubbed:KIND:HASH>`, where HASH is a short
keyed hash (HMAC-SHA256 under a local key) of the secret: the same secret always gives the same
placeholder, so diffs stay quiet, while the hash tells nothing about the secret.

What counts as a secret:
- a string under a key or widget whose name says so (`api_key`, `hf_token`, `password`,
  `client_secret`, `auth`, ... and `[backup] scrub_names`); positional `widgets_values` of a
  UI-format node are named from the node's definition when one is given;
- a value shaped like a known credential anywhere in any string: Hugging Face `hf_…`,
  `sk-…` keys, GitHub `ghp_…`/`github_pat_…`, AWS `AKIA…`, Google `AIza…`, Replicate `r8_…`,
  JWTs, bearer/basic credentials, Civitai keys (a string that is exactly 32 hex digits);
- credentials in URLs: `user:password@host`, `?token=…`, `&api_key=…`, `?key=…`, signatures;
- `NAME=value` / `NAME: value` in free text when NAME names a secret;
- matches of `[backup] scrub_patterns` (the named group `secret`, else the whole match).

JSON files keep every byte that holds no secret: only the string tokens that change are
re-encoded. Other text files are scrubbed as text; binary files are kept as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comfyfleet.errors import BackupError

PLACEHOLDER = re.compile(r"<scrubbed:([a-z0-9_]+):([0-9a-f]{6})>")
_HASH_CHARS = 6

# Credentials recognisable by their shape alone (kind, pattern, group holding the secret).
_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("hf_token", re.compile(r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9])")),
    ("sk_key", re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}")),
    (
        "github_token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("google_key", re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])")),
    ("replicate_token", re.compile(r"(?<![A-Za-z0-9_])r8_[A-Za-z0-9]{37}(?![A-Za-z0-9])")),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)
_CIVITAI = re.compile(r"[0-9a-f]{32}")  # only as a whole string: md5-like ids are rare there
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@\"'<>]+:([^/\s@\"'<>]+)@")
_URL_PARAM = re.compile(r"[?&;#]([A-Za-z0-9_.-]+)=([^&#\s\"'<>]+)")
_URL_SECRET_PARAMS = frozenset(
    {"key", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}
    | {"x-goog-signature", "x-goog-credential", "code"}
)
_BEARER = re.compile(r"(?i)\b(?:bearer)\s+([A-Za-z0-9._~+/=-]{8,})")
_BASIC = re.compile(r"(?i)\bbasic\s+((?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2})")
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.-]*)[\"']?\s*(=|:(?!//))\s*"
    r"(?:\"([^\"\s]{6,})\"|'([^'\s]{6,})'|([^\s\"',;&}]{6,}))"
)
# After `NAME:` (prose: "a token: golden coin") only a credential-looking value counts.
_CREDENTIAL_LIKE = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z]).{8,}")

# Name words: a name is split into words (snake, kebab, dotted, camelCase); its last word, or
# its last two, decide.
_WORD_KINDS = {
    "token": "token",
    "password": "password",
    "passwd": "password",
    "pwd": "password",
    "passphrase": "password",
    "secret": "secret",
    "apikey": "api_key",
    "auth": "auth",
    "authorization": "auth",
    "credential": "auth",
    "credentials": "auth",
    "cookie": "auth",
}
_KEY_OWNERS = frozenset(
    {"api", "secret", "access", "private", "license", "openai", "anthropic", "fal", "civitai"}
    | {"replicate", "stability", "gemini", "google", "hf", "huggingface", "elevenlabs", "runway"}
    | {"luma", "ideogram", "kling", "minimax", "bfl", "recraft", "pika", "tripo", "deepseek"}
    | {"groq", "mistral", "openrouter", "xai", "aws", "azure", "comfy", "comfyorg", "together"}
)
# `eos_token`, `pad_token`: tokenizer settings, not credentials.
_NOT_CREDENTIAL_TOKENS = frozenset(
    {"pad", "bos", "eos", "sep", "cls", "unk", "mask", "start", "end", "stop", "special", "max"}
)
_TRIVIAL = frozenset(
    {"none", "null", "true", "false", "default", "auto", "disabled", "enabled", "env", "yes"}
    | {"no", "off", "on", "undefined"}
)
_ENV_REFERENCE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|env:[A-Za-z_][A-Za-z0-9_]*")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A JSON string token; in valid JSON no `"` appears outside strings, so a scan finds them all.
_STRING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(?P<key>(?=\s*:))?', re.DOTALL)

WidgetNames = Callable[[str], Sequence[str] | None]


@dataclass(frozen=True)
class Finding:
    """One scrubbed value: where it was (never what it was)."""

    file: str
    path: str  # JSON path (`$.nodes[2].widgets_values[0]`), or `line N` in a text file
    kind: str
    placeholder: str
    name: str | None = None  # the key or widget name, when the value had one
    node: str | None = None  # `node 12 (GeminiNode)`, for a value inside a workflow node

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "path": self.path,
            "kind": self.kind,
            "placeholder": self.placeholder,
            "name": self.name,
            "node": self.node,
        }

    def describe(self) -> str:
        where = f" {self.node}" if self.node else ""
        named = f" '{self.name}'" if self.name else ""
        return f"{self.file} {self.path}{where}{named} ({self.kind})"


@dataclass(frozen=True)
class Scrubbed:
    """A file as it goes to the repository, and what was taken out of it."""

    data: bytes
    findings: tuple[Finding, ...]


def name_kind(name: str, extra_names: Iterable[str] = ()) -> str | None:
    """The kind of secret a key or widget name announces, or None for an ordinary name."""
    if name.lower() in {n.lower() for n in extra_names}:
        return "secret"
    words = [w.lower() for w in _WORDS.findall(name)]
    if not words:
        return None
    last = words[-1]
    before = words[-2] if len(words) > 1 else None
    if last == "key" and before in _KEY_OWNERS:
        return "api_key"
    if last == "token" and before in _NOT_CREDENTIAL_TOKENS:
        return None
    return _WORD_KINDS.get(last)


def placeholders_in(data: bytes) -> list[str]:
    """The kinds of every scrub placeholder in `data` (empty when there is none)."""
    text = data.decode("utf-8", errors="replace")
    return [m.group(1) for m in PLACEHOLDER.finditer(text)]


def _meaningful(value: str) -> bool:
    text = value.strip()
    return bool(text) and text.lower() not in _TRIVIAL and not _ENV_REFERENCE.fullmatch(text)


class Scrubber:
    """Scrubs the files of one backup together, so a secret found in one file by its name is
    also taken out of every other file that carries it."""

    def __init__(
        self,
        key: bytes,
        *,
        names: Sequence[str] = (),
        patterns: Sequence[str] = (),
        widget_names: WidgetNames | None = None,
    ) -> None:
        self._key = key
        self._names = tuple(names)
        self._patterns = tuple(re.compile(p) for p in patterns)
        self._widget_names = widget_names
        self._named: dict[str, str] = {}  # whole values found by their name -> kind

    def placeholder(self, secret: str, kind: str) -> str:
        digest = hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"<scrubbed:{kind}:{digest[:_HASH_CHARS]}>"

    def scrub_files(self, files: Mapping[str, bytes]) -> dict[str, Scrubbed]:
        """Every file scrubbed; secrets found by name in any file are removed from all."""
        parsed = {name: _parse(data) for name, data in files.items()}
        for doc in parsed.values():
            if doc is not None and not isinstance(doc, str):
                self._collect(doc.value, None, None)
        return {name: self._scrub_one(name, data, parsed[name]) for name, data in files.items()}

    # --- pass 1: values that are secret because of their name ------------------------------

    def _collect(self, value: Any, name: str | None, node: Mapping[str, Any] | None) -> None:
        if isinstance(value, str):
            kind = name_kind(name, self._names) if name else None
            if kind and _meaningful(value) and not PLACEHOLDER.fullmatch(value):
                self._named.setdefault(value, self._shape_kind(value) or kind)
        elif isinstance(value, Mapping):
            if _is_ui_node(value):
                node = value
            for key, item in value.items():
                if key == "widgets_values" and node is value and isinstance(item, list):
                    names = self._names_of(value)
                    for index, slot in enumerate(item):
                        slot_name = names[index] if index < len(names) else None
                        self._collect(slot, slot_name, node)
                else:
                    self._collect(item, str(key), node)
        elif isinstance(value, list):
            # a list under a secret name (`"api_keys": [...]`) holds secrets
            for item in value:
                self._collect(item, name, node)

    def _names_of(self, node: Mapping[str, Any]) -> Sequence[str]:
        if self._widget_names is None:
            return ()
        return self._widget_names(str(node.get("type"))) or ()

    def _shape_kind(self, value: str) -> str | None:
        for kind, pattern in _SHAPES:
            if pattern.fullmatch(value):
                return kind
        return None

    # --- pass 2: replacing ----------------------------------------------------------------

    def transform(self, value: str, *, is_key: bool = False) -> tuple[str, list[str]]:
        """`value` with its secrets replaced, and the kinds replaced (context-free).

        `is_key`: the string is an object key (never taken as a bare Civitai key)."""
        if PLACEHOLDER.fullmatch(value):
            return value, []
        named = self._named.get(value)
        if named is not None:
            return self.placeholder(value, named), [named]
        if not is_key and _CIVITAI.fullmatch(value):
            return self.placeholder(value, "civitai_key"), ["civitai_key"]
        spans = self._spans(value)
        out, kinds = value, []
        for start, end, kind in sorted(spans, reverse=True):
            out = out[:start] + self.placeholder(value[start:end], kind) + out[end:]
            kinds.append(kind)
        # a secret found by its name elsewhere, quoted inside longer text
        for secret, kind in sorted(self._named.items(), key=lambda kv: -len(kv[0])):
            if len(secret) >= 8 and secret in out:
                out = out.replace(secret, self.placeholder(secret, kind))
                kinds.append(kind)
        return out, kinds[::-1]

    def _spans(self, value: str) -> list[tuple[int, int, str]]:
        found: list[tuple[int, int, str]] = []

        def add(start: int, end: int, kind: str) -> None:
            secret = value[start:end]
            if end <= start or PLACEHOLDER.fullmatch(secret) or _inside_placeholder(value, start):
                return
            if any(s < end and start < e for s, e, _ in found):
                return  # an earlier, more specific rule already took this text
            found.append((start, end, kind))

        for kind, pattern in _SHAPES:
            for m in pattern.finditer(value):
                add(m.start(), m.end(), kind)
        for m in _URL_PASSWORD.finditer(value):
            add(m.start(1), m.end(1), "url_password")
        for m in _URL_PARAM.finditer(value):
            param = m.group(1)
            if param.lower() in _URL_SECRET_PARAMS or name_kind(param, self._names):
                add(m.start(2), m.end(2), "url_token")
        for pattern, kind in ((_BEARER, "bearer"), (_BASIC, "basic_auth")):
            for m in pattern.finditer(value):
                add(m.start(1), m.end(1), kind)
        for m in _ASSIGNMENT.finditer(value):
            kind_of_name = name_kind(m.group(1), self._names)
            group = next(g for g in (3, 4, 5) if m.group(g) is not None)
            secret = m.group(group)
            if m.group(2) == ":" and not _CREDENTIAL_LIKE.fullmatch(secret):
                continue
            if kind_of_name and _meaningful(secret):
                add(m.start(group), m.end(group), kind_of_name)
        for pattern in self._patterns:
            for m in pattern.finditer(value):
                which: str | int = "secret" if "secret" in pattern.groupindex else 0
                add(m.start(which), m.end(which), "custom")
        return found

    def _scrub_one(self, file: str, data: bytes, doc: _Json | str | None) -> Scrubbed:
        if doc is None:
            return Scrubbed(data, ())  # not text: kept as it is
        if isinstance(doc, str):
            return self._scrub_text(file, doc)
        findings = list(self._findings(file, doc.value))
        if not findings:
            return Scrubbed(data, ())
        text = _STRING_TOKEN.sub(self._token, doc.text)
        self._check_clean(file, text)
        return Scrubbed(text.encode("utf-8"), tuple(findings))

    def _token(self, match: re.Match[str]) -> str:
        token = match.group(0)
        is_key = match.group("key") is not None
        new, kinds = self.transform(json.loads(token), is_key=is_key)
        return token if not kinds else json.dumps(new, ensure_ascii=False)

    def _scrub_text(self, file: str, text: str) -> Scrubbed:
        findings: list[Finding] = []
        lines = text.splitlines(keepends=True)
        out = []
        for number, line in enumerate(lines, start=1):
            new, kinds = self.transform(line)
            out.append(new)
            findings += [
                Finding(file, f"line {number}", kind, _first_placeholder(new, kind))
                for kind in kinds
            ]
        if not findings:
            return Scrubbed(text.encode("utf-8"), ())
        return Scrubbed("".join(out).encode("utf-8"), tuple(findings))

    def _findings(self, file: str, doc: Any) -> Iterator[Finding]:
        for path, value, name, node in _strings(doc, "$", None, None, self._names_of):
            new, kinds = self.transform(value, is_key=path.endswith("{key}"))
            for kind in dict.fromkeys(kinds):
                yield Finding(file, path, kind, _first_placeholder(new, kind), name, node)

    def _check_clean(self, file: str, text: str) -> None:
        """Never hand on a file that still parses to a secret (a scrub that went wrong)."""
        try:
            again = json.loads(text)
        except ValueError as exc:
            raise BackupError(f"scrubbing {file} broke its JSON ({exc})") from exc
        for path, value, _name, _node in _strings(again, "$", None, None, self._names_of):
            if self.transform(value, is_key=path.endswith("{key}"))[1]:
                raise BackupError(f"scrubbing {file} left a secret behind; nothing was written")


@dataclass(frozen=True)
class _Json:
    text: str
    value: Any


def _parse(data: bytes) -> _Json | str | None:
    """The document (JSON), the text (other text), or None (binary)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return _Json(text, json.loads(text))
    except ValueError:
        return text


def _is_ui_node(value: Mapping[str, Any]) -> bool:
    return isinstance(value.get("type"), str) and "widgets_values" in value and "id" in value


def _node_label(value: Mapping[str, Any], key: str | None) -> str | None:
    if _is_ui_node(value):
        return f"node {value.get('id')} ({value.get('type')})"
    if isinstance(value.get("class_type"), str) and key is not None:
        return f"node {key} ({value['class_type']})"
    return None


def _step(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if _IDENT.fullmatch(key) else f"{path}[{json.dumps(key)}]"


def _strings(
    value: Any,
    path: str,
    name: str | None,
    node: str | None,
    names_of: Callable[[Mapping[str, Any]], Sequence[str]],
    key: str | None = None,
) -> Iterator[tuple[str, str, str | None, str | None]]:
    """Every string of a document (keys included) with its path, name and node."""
    if isinstance(value, str):
        yield path, value, name, node
    elif isinstance(value, Mapping):
        node = _node_label(value, key) or node
        widget_names = names_of(value) if _is_ui_node(value) else ()
        for k, item in value.items():
            k = str(k)
            yield _step(path, k) + "{key}", k, None, node
            if k == "widgets_values" and widget_names and isinstance(item, list):
                for i, slot in enumerate(item):
                    slot_name = widget_names[i] if i < len(widget_names) else None
                    yield from _strings(slot, _step(_step(path, k), i), slot_name, node, names_of)
            else:
                item_name = None if k == "widgets_values" else k
                yield from _strings(item, _step(path, k), item_name, node, names_of, k)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, _step(path, i), name, node, names_of)


def _inside_placeholder(value: str, start: int) -> bool:
    return any(m.start() <= start < m.end() for m in PLACEHOLDER.finditer(value))


def _first_placeholder(text: str, kind: str) -> str:
    for m in PLACEHOLDER.finditer(text):
        if m.group(1) == kind:
            return m.group(0)
    return f"<scrubbed:{kind}>"
