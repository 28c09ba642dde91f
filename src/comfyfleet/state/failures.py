"""SQLAlchemy, driver and Alembic exceptions become `errors.StateError` here, and only here.

Messages name the database as `where` (a file path, or the URL with its password hidden) and
never quote a password: driver text is scrubbed of the URL's password and of anything that
looks like a secret before it is shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from comfyfleet.errors import StateError
from comfyfleet.state.scrub import scrub_text


def describe(url: URL) -> str:
    """How messages name a database: the SQLite file, or the URL without its password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database}"
    host = url.host or "localhost"
    port = url.port or 5432
    return f"PostgreSQL at {host}:{port} (database {url.database or '?'}, user {url.username})"


def reason_of(exc: BaseException, url: URL) -> str:
    """The driver's own words, first lines only, with every trace of a password removed."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip() or type(orig).__name__
    if url.password:
        text = text.replace(str(url.password), "<redacted>")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return scrub_text(" ".join(lines[:3]))


def _sqlite_error(reason: str, where: str) -> StateError:
    low = reason.lower()
    if "locked" in low or "busy" in low:
        return StateError(
            f"{where} is locked: another comfyfleet process kept it busy too long ({reason})",
            hint="wait for the other command to finish and retry; if none is running, "
            "a crashed process may hold the lock: retry in a minute",
        )
    if "unable to open" in low or "readonly" in low or "read-only" in low:
        return StateError(
            f"cannot open {where} for writing ({reason})",
            hint="check that its folder exists and is writable, or set COMFYFLEET_DB_URL",
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StateError(
            f"{where} is damaged ({reason})",
            hint="move the file away (comfyfleet will create a new one) and run "
            "`comfyfleet ls` to adopt the instances Vast still lists",
        )
    return StateError(f"{where} failed: {reason}")


def _postgres_error(reason: str, where: str, *, connecting: bool) -> StateError:
    low = reason.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return StateError(
            f"{where} refused the login ({reason})",
            hint="check the user name and password in COMFYFLEET_DB_URL",
        )
    if "does not exist" in low and "database" in low:
        return StateError(
            f"{where}: the database does not exist ({reason})",
            hint="create it (createdb) or point COMFYFLEET_DB_URL at an existing database",
        )
    if connecting:
        return StateError(
            f"cannot connect to {where}: {reason}",
            hint="check that PostgreSQL is running and reachable, and check COMFYFLEET_DB_URL",
        )
    return StateError(f"{where} failed: {reason}")


# libpq's words for a connection that could not be made (refused, unknown host, timeout).
_CONNECT_WORDS = ("connect", "resolve host", "translate host", "timeout expired")


def to_state_error(exc: SQLAlchemyError, url: URL) -> StateError:
    """The StateError a user should see for `exc` raised while using the database at `url`."""
    where = describe(url)
    reason = reason_of(exc, url)
    if isinstance(exc, IntegrityError):
        return StateError(
            f"{where} refused a conflicting write ({reason})",
            hint="another comfyfleet process changed the same record: retry the command",
        )
    if url.get_backend_name() == "sqlite":
        return _sqlite_error(reason, where)
    low = reason.lower()
    connecting = bool(getattr(exc, "connection_invalidated", False)) or any(
        word in low for word in _CONNECT_WORDS
    )
    return _postgres_error(reason, where, connecting=connecting)


@contextmanager
def translated(url: URL) -> Iterator[None]:
    """Run a block; a SQLAlchemy error inside it leaves as a StateError.

    The original exception is not chained: its text may quote SQL parameters and connection
    details, and a StateError must be safe to print in full.
    """
    try:
        yield
    except SQLAlchemyError as exc:
        raise to_state_error(exc, url) from None
