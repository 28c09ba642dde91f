"""Resolve what a user types for an instance (name, Vast id, local id) to one row.

Names start with a letter (`records.check_name`), so a number is only ever an id: a Vast id
or a local id. The two id spaces can collide (local 12, Vast 12); then the user must say which,
with `#12` for the local id or `vast:12` for the Vast one.
"""

from __future__ import annotations

from sqlalchemy import Connection, or_, select

from comfyfleet.errors import UsageError
from comfyfleet.state.records import instance_from
from comfyfleet.state.rows import InstanceRow
from comfyfleet.state.schema import instances

_SHOWN = 10  # candidates listed in an error


def _describe(row: InstanceRow) -> str:
    parts = [f"#{row.id}"]
    if row.name:
        parts.append(f"name {row.name}")
    if row.vast_id is not None:
        parts.append(f"vast id {row.vast_id}")
    parts.append(row.status.value)
    return ", ".join(parts)


def _listing(rows: list[InstanceRow]) -> str:
    shown = "; ".join(_describe(r) for r in rows[:_SHOWN])
    more = f"; … ({len(rows)} in all)" if len(rows) > _SHOWN else ""
    return shown + more


def _candidates(conn: Connection, ref: str) -> list[InstanceRow]:
    c = instances.c
    if ref.startswith("#") and ref[1:].isdigit():
        cond = c.id == int(ref[1:])
    elif ref.lower().startswith("vast:") and ref[5:].isdigit():
        cond = c.vast_id == int(ref[5:])
    elif ref.isdigit():
        cond = or_(c.vast_id == int(ref), c.id == int(ref))
    else:
        cond = c.name == ref
    rows = conn.execute(select(instances).where(cond).order_by(c.id))
    return [instance_from(r._mapping) for r in rows]


def resolve(conn: Connection, ref: str) -> InstanceRow:
    """The one instance `ref` names; live instances win over destroyed ones.

    No match or several matches: UsageError listing the candidates.
    """
    ref = ref.strip()
    found = _candidates(conn, ref) if ref else []
    live = [r for r in found if r.live]
    pool = live or found
    if len(pool) == 1:
        return pool[0]
    if len(pool) > 1:
        raise UsageError(
            f"{ref!r} matches {len(pool)} instances: {_listing(pool)}",
            hint="use '#<local id>' or 'vast:<vast id>' to say which",
        )
    known = [
        instance_from(r._mapping)
        for r in conn.execute(
            select(instances).where(instances.c.destroyed_at.is_(None)).order_by(instances.c.id)
        )
    ]
    listing = _listing(known) if known else "none"
    raise UsageError(
        f"no instance {ref!r} in the state database (live instances: {listing})",
        hint="use a name, a Vast id, or '#<local id>'; `comfyfleet ls` lists them",
    )
