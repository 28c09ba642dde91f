"""Vast's JSON answers -> typed models, at the adapter boundary.

Secrets the API echoes are dropped here and never reach a model, a log or an error:
`extra_env` (which holds the env we set at create, the web password included) keeps only its
key names (`Instance.env_keys`); the user object's `api_key` is discarded. Validation errors
name the field, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from comfyfleet.errors import VastProtocolError
from comfyfleet.models.vast import Instance, Offer, SshKey, VastUser

M = TypeVar("M", bound=BaseModel)

# Raw fields that hold secrets and never get past this module.
_SECRET_FIELDS = frozenset({"api_key", "instance_api_key", "extra_env"})


def _validate(model: type[M], raw: Any, what: str) -> M:
    if not isinstance(raw, Mapping):
        raise VastProtocolError(f"{what}: expected an object, got {type(raw).__name__}")
    clean = {k: v for k, v in raw.items() if k not in _SECRET_FIELDS}
    try:
        return model.model_validate(clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        ident = raw.get("id")
        label = f"{what} {ident}" if isinstance(ident, int) else what
        raise VastProtocolError(f"{label} does not follow Vast's API ({problems})") from None


def _field(data: Any, key: str, what: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        got = sorted(data)[:10] if isinstance(data, Mapping) else type(data).__name__
        raise VastProtocolError(f"{what}: the answer has no {key!r} (got {got})")
    return data[key]


def parse_offers(data: Any) -> list[Offer]:
    """`POST /bundles/` answer -> offers, in the server's order."""
    rows = _field(data, "offers", "offer search")
    if not isinstance(rows, list):
        raise VastProtocolError("offer search: 'offers' is not a list")
    return [_validate(Offer, row, "offer") for row in rows]


def env_keys(extra_env: Any) -> tuple[str, ...]:
    """Names of the env entries Vast echoes (a list of [key, value] pairs, or a dict)."""
    if isinstance(extra_env, Mapping):
        return tuple(str(k) for k in extra_env)
    if isinstance(extra_env, list):
        return tuple(str(p[0]) for p in extra_env if isinstance(p, list | tuple) and p)
    return ()


def parse_instance(raw: Any) -> Instance:
    """One instance object -> Instance, with `extra_env` reduced to its key names."""
    if not isinstance(raw, Mapping):
        raise VastProtocolError(f"instance: expected an object, got {type(raw).__name__}")
    clean = dict(raw)
    clean["env_keys"] = env_keys(raw.get("extra_env"))
    return _validate(Instance, clean, "instance")


def parse_instance_page(data: Any) -> tuple[list[Instance], str | None]:
    """A list answer (v1 page or legacy v0) -> instances and the next page's token."""
    rows = _field(data, "instances", "instance list")
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise VastProtocolError("instance list: 'instances' is not a list")
    token = data.get("next_token")
    if token is not None and not isinstance(token, str | int):
        raise VastProtocolError("instance list: 'next_token' is neither a string nor null")
    return [parse_instance(row) for row in rows], (str(token) if token not in (None, "") else None)


def parse_show(data: Any) -> Instance | None:
    """`GET /instances/{id}/` answer: one object under "instances", or null when gone."""
    raw = _field(data, "instances", "instance")
    if raw is None:
        return None
    if isinstance(raw, list):  # tolerate a one-item list
        if not raw:
            return None
        raw = raw[0]
    return parse_instance(raw)


def parse_ssh_key(raw: Any) -> SshKey:
    """An account SSH key; the list answer names the text `key`, the create answer `public_key`."""
    if isinstance(raw, Mapping) and "public_key" not in raw and "key" in raw:
        raw = {**raw, "public_key": raw["key"]}
    return _validate(SshKey, raw, "ssh key")


def parse_ssh_keys(data: Any) -> list[SshKey]:
    """`GET /ssh/` answer (a JSON array; an object wrapping one is accepted) -> live keys."""
    rows = data
    if isinstance(data, Mapping):
        rows = next((data[k] for k in ("ssh_keys", "keys") if isinstance(data.get(k), list)), None)
    if not isinstance(rows, list):
        raise VastProtocolError("ssh key list: expected a JSON array")
    keys = [row for row in rows if not (isinstance(row, Mapping) and row.get("deleted_at"))]
    return [parse_ssh_key(row) for row in keys]


def parse_user(data: Any) -> VastUser:
    """`GET /users/current/` answer -> VastUser; the raw `api_key` is dropped here."""
    return _validate(VastUser, data, "current user")


def contract_id(data: Any) -> int | None:
    """The instance id a create answer reports (`new_contract`), if any."""
    if not isinstance(data, Mapping):
        return None
    value = data.get("new_contract")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
