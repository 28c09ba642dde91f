"""Downloads run on an instance with curl, configured through the command's standard input.

    request = DownloadRequest(url, headers=(("Authorization", "Bearer ..."),))
    answer = await head(conn, request)                 # size, HF's sha256, first status
    result = await fetch(conn, request, part_path, on_progress)

The instance runs `curl --disable --config -` and nothing else shows in its process list: the
URL, the headers (tokens) and every option are written to curl's stdin (`curl_config`), never
into argv (the remote `ps`), an environment assignment, a file or a log; `--disable` keeps a
`~/.curlrc` on the instance out of it. curl drops custom
`Authorization` headers when a redirect leaves the host (Hugging Face and Civitai redirect to
signed CDN URLs), and only http(s) is allowed, redirects included.

`probe` asks for the first byte only, for servers that refuse HEAD (signed CDN URLs), so the
size is known before a download either way. `fetch` appends to the `.part` file
(`--continue-at -`), holding an advisory lock on it so two downloads of one file never
interleave; curl's progress meter is parsed into `Progress`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from comfyfleet import __version__
from comfyfleet.errors import UnsafeSource
from comfyfleet.remote.commands import RemoteCommand, run, stream
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.util.redact import redact_url

USER_AGENT = f"comfyfleet/{__version__}"
#: Exit code of the fetch script when another download holds the `.part` file's lock.
BUSY_EXIT = 75
_TOO_LARGE = 63  # curl: the announced size exceeds max-filesize
_CURL_ERROR = re.compile(r"^curl: \((\d+)\) (.*)$")
_HTTP_ERROR = re.compile(r"returned error: (\d{3})")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kMGTP]?)$")
_UNITS = {"": 1, "k": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# $1: the .part file. The lock is held by curl itself (fd 9 is inherited through exec), so
# it lasts exactly as long as the transfer; without flock(1) the download runs unlocked.
_FETCH = r"""
mkdir -p -- "$(dirname -- "$1")" || exit 73
exec 9>>"$1" || exit 73
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { echo "comfyfleet: another download of this file is running" >&2; exit 75; }
fi
exec curl --disable --config -
"""


@dataclass(frozen=True)
class DownloadRequest:
    """What curl is told: the URL, request headers (tokens: never shown) and time limits."""

    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    connect_timeout: float = 30.0
    stall_timeout: float = 120.0  # seconds under 1 KiB/s before curl gives up (exit 28)

    @property
    def shown(self) -> str:
        """The URL as messages show it: no query, no user info."""
        return redact_url(self.url)


def _quoted(value: str, what: str) -> str:
    """A double-quoted curl config value; control characters would end the line: refused."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UnsafeSource(f"{what} holds control characters", hint="check the value you gave")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def curl_config(
    request: DownloadRequest,
    *,
    head: bool = False,
    probe: bool = False,
    output: PurePosixPath | None = None,
) -> bytes:
    """curl's config text for `request`: a HEAD, a one-byte probe GET (headers only), or a
    resumable GET into `output`."""
    lines = [
        f"url = {_quoted(request.url, 'the download URL')}",
        "globoff",  # `[1-9]` in a URL is text, not a range of files to fetch
        "location",
        "max-redirs = 10",
        'proto = "=http,https"',
        'proto-redir = "=http,https"',
        f"connect-timeout = {max(1, round(request.connect_timeout))}",
        f"user-agent = {_quoted(USER_AGENT, 'the user agent')}",
        "show-error",
    ]
    for name, value in request.headers:
        lines.append(f"header = {_quoted(f'{name}: {value}', f'the {name} header')}")
    if head:
        lines += ["head", "silent", "max-time = 120"]
    elif probe:
        # One byte (Range: bytes=0-0); a server that ignores the range and announces the
        # whole file is cut off by max-filesize before its body comes (exit 63).
        lines += [
            'range = "0-0"',
            "max-filesize = 1",
            'dump-header = "-"',
            'output = "/dev/null"',
            "silent",
            "max-time = 120",
        ]
    else:
        assert output is not None
        lines += [
            "fail",
            f"output = {_quoted(output.as_posix(), 'the output path')}",
            "continue-at = -",
            "speed-limit = 1024",
            f"speed-time = {max(1, round(request.stall_timeout))}",
        ]
    return ("\n".join(lines) + "\n").encode()


# --- HEAD ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadAnswer:
    """What a HEAD (redirects followed) said about a download."""

    exit_code: int
    first_status: int | None  # the first server's answer (before any redirect)
    status: int | None  # the last answer
    size: int | None  # the file's size: the final Content-Length, or Hugging Face's X-Linked-Size
    sha256: str | None  # Hugging Face's X-Linked-Etag: an LFS file's sha256
    redirected: bool
    error: str = ""  # curl's own error line, when it failed

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.status is not None and 200 <= self.status < 300


def parse_head(stdout: str, exit_code: int = 0, stderr: str = "") -> HeadAnswer:
    """The header blocks `curl --head --location` prints, one per answer, as a HeadAnswer."""
    blocks: list[tuple[int, dict[str, str]]] = []
    for line in stdout.replace("\r\n", "\n").split("\n"):
        if line.startswith("HTTP/"):
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            blocks.append((status, {}))
        elif ":" in line and blocks:
            name, _, value = line.partition(":")
            blocks[-1][1][name.strip().lower()] = value.strip()
    # 1xx answers (100 Continue, 103 Early Hints) precede the real one: skip them.
    blocks = [b for b in blocks if not 100 <= b[0] < 200]
    first = blocks[0] if blocks else None
    last = blocks[-1] if blocks else None
    size = None
    if last and last[0] == 206:  # a ranged answer: the total is in Content-Range
        size = _int(last[1].get("content-range", "").rpartition("/")[2])
    elif last and 200 <= last[0] < 300:
        size = _int(last[1].get("content-length"))
    sha = None
    for _, headers in blocks:
        size = size if size is not None else _int(headers.get("x-linked-size"))
        etag = headers.get("x-linked-etag", "").removeprefix("W/").strip('"').lower()
        if _HEX64.match(etag):
            sha = etag
    return HeadAnswer(
        exit_code=exit_code,
        first_status=first[0] if first else None,
        status=last[0] if last else None,
        size=size,
        sha256=sha,
        redirected=len(blocks) > 1,
        error=_last_error(stderr),
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _last_error(stderr: str) -> str:
    errors = [m.group(0) for m in map(_CURL_ERROR.match, stderr.splitlines()) if m]
    return errors[-1] if errors else stderr.strip()[-300:]


async def head(conn: SshConnection, request: DownloadRequest) -> HeadAnswer:
    """HEAD the URL from the instance (same curl, same stdin config as the download)."""
    done = await run(
        conn,
        RemoteCommand.of("curl", "--disable", "--config", "-"),
        stdin=curl_config(request, head=True),
    )
    return parse_head(done.stdout, done.exit_code, done.stderr)


async def probe(conn: SshConnection, request: DownloadRequest) -> HeadAnswer:
    """Ask for the first byte only, for the answers a HEAD does not give: signed CDN URLs are
    signed for GET and refuse HEAD. The size comes from Content-Range (or Content-Length)."""
    done = await run(
        conn,
        RemoteCommand.of("curl", "--disable", "--config", "-"),
        stdin=curl_config(request, probe=True),
    )
    code = 0 if done.exit_code == _TOO_LARGE else done.exit_code
    return parse_head(done.stdout, code, done.stderr)


# --- GET -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """curl's progress meter: bytes received by this transfer, its size, current speed."""

    received: int
    total: int | None
    speed: float | None  # bytes per second


def parse_size(text: str) -> int | None:
    """A meter size (`2929k`, `1.5G`, `0`): curl's units are powers of 1024."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def parse_meter(line: str) -> Progress | None:
    """One redraw of curl's progress meter, or None for any other line.

    Columns: % Total, Total, % Received, Received, % Xferd, Xferd, Average Dload, Upload,
    Time Total, Time Spent, Time Left, Current Speed.
    """
    fields = line.split()
    if len(fields) != 12 or not fields[0].isdigit():
        return None
    received = parse_size(fields[3])
    if received is None:
        return None
    total = parse_size(fields[1])
    if fields[2] == "100" and total:
        received = total  # the meter rounds (`195k`): at 100% the exact size is known
    return Progress(received, total or None, parse_size(fields[11]))


@dataclass(frozen=True)
class FetchResult:
    """How a download ended: curl's exit code, its error line, the HTTP status it reported."""

    exit_code: int
    error: str = ""
    status: int | None = None  # with `--fail`: the HTTP error status (exit 22)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def fetch_command(part: PurePosixPath) -> RemoteCommand:
    """`sh -c FETCH comfyfleet-fetch PART`: lock the part file, then `exec curl --config -`."""
    return RemoteCommand.of("sh", "-c", _FETCH, "comfyfleet-fetch", part)


async def fetch(
    conn: SshConnection,
    request: DownloadRequest,
    part: PurePosixPath,
    on_progress: Callable[[Progress], None],
) -> FetchResult:
    """Download `request` into `part`, continuing what it already holds; never raises for
    curl's own failures (the caller decides: retry, discard, report)."""
    errors: list[str] = []

    def on_err(text: str) -> None:
        line = text.strip()
        meter = parse_meter(line)
        if meter is not None:
            on_progress(meter)
        elif line and not line.startswith(("% Total", "Dload")):
            errors.append(line)

    code = await stream(
        conn,
        fetch_command(part),
        lambda _text: None,
        on_err,
        stdin=curl_config(request, output=part),
    )
    error = _last_error("\n".join(errors))
    status = _HTTP_ERROR.search(error)
    return FetchResult(code, error, int(status.group(1)) if status else None)
