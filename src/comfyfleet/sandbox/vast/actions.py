"""What the API's requests do to the world: create, start/stop, label, reboot, keys, destroy.

Each function validates a request body the way the reference describes Vast doing it and
raises `ApiError` with Vast's status and error code when it refuses.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from comfyfleet.sandbox.vast import templates
from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.instance import (
    HOLDS_GPUS,
    Instance,
    Phase,
    normalise_runtype,
    parse_env,
)
from comfyfleet.sandbox.vast.market import Holder
from comfyfleet.sandbox.vast.world import SshKey, World

_KEY_RE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+(\s.*)?$")


def _number(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, "invalid_args", f"{key} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_args", f"{key} must be a number, got {value!r}") from exc


def _require_credit(world: World, **extra: Any) -> None:
    if world.account.credit <= 0:
        raise ApiError(
            400,
            "missing_billing",
            "Your account has no credit left; add credit to rent or start instances.",
            **extra,
        )


def create_instance(world: World, offer_id: int, body: Any) -> tuple[Instance, int | None]:
    """Rent offer `offer_id`; returns the instance and a forced error status (fault knob)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_args", "Invalid json body", ask_id=offer_id)
    machine = world.machine_for_offer(offer_id)
    if machine is None:
        raise ApiError(
            404,
            "no_such_ask",
            f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.",
            ask_id=offer_id,
        )
    _require_credit(world, ask_id=offer_id)
    template = None
    if body.get("template_hash_id"):
        template = templates.by_hash(str(body["template_hash_id"]))
        if template is None:
            raise ApiError(
                404,
                "no_such_template",
                f"template {body['template_hash_id']} not found",
                ask_id=offer_id,
            )
    image = body.get("image") or (template and f"{template['image']}:{template['tag']}")
    if not isinstance(image, str) or not image.strip():
        raise ApiError(400, "invalid_args", "image is required", ask_id=offer_id)
    if len(image) > 1024:
        raise ApiError(400, "invalid_args", "image is limited to 1024 characters", ask_id=offer_id)
    env = parse_env(template["env"]) if template else []
    request_env = parse_env(body.get("env"))
    request_keys = {k for k, _ in request_env}
    env = [pair for pair in env if pair[0] not in request_keys] + request_env
    disk = _number(body, "disk", 8.0) or 0.0
    if disk <= 0 or disk > float(machine.base["disk_space"]):
        raise ApiError(
            400,
            "invalid_args",
            f"disk must be between 1 and {machine.base['disk_space']} GB, got {disk}",
            ask_id=offer_id,
        )
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ApiError(400, "invalid_args", "args must be a list of strings", ask_id=offer_id)
    if body.get("runtype"):
        runtype = normalise_runtype(body["runtype"])
    elif template is not None:
        runtype = templates.runtype_of(template)
    else:
        runtype = "args" if args else normalise_runtype(None)
    onstart = body.get("onstart") or (template["onstart"] if template else None)
    launch_text = (onstart or "") + " ".join(args) + str(body.get("args_str") or "")
    if len(launch_text) > 4096:
        raise ApiError(
            400, "invalid_args", "onstart and args are limited to 4096 characters", ask_id=offer_id
        )
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 256):
        raise ApiError(400, "invalid_args", "label is limited to 256 characters", ask_id=offer_id)
    price = _number(body, "price", None)
    if price is not None and not 0.001 <= price <= 128:
        raise ApiError(400, "invalid_price", "price must be between 0.001 and 128 $/hour")
    target = body.get("target_state") or "running"
    if target not in ("running", "stopped"):
        raise ApiError(400, "invalid_args", "target_state must be running or stopped")
    cancel_unavail = body.get("cancel_unavail")
    if cancel_unavail is None:
        cancel_unavail = price is None and target == "running"

    gpus = list(machine.offer_gpus)
    unavailable = world.knobs.take_unavailable()
    if unavailable and cancel_unavail:
        world.consume_offer(machine, gpus, Holder("renter", None, world.renter_until()))
        raise ApiError(
            410,
            "no_such_ask",
            f"error 410/3603: no_such_ask Instance type by id {offer_id} is no longer available.",
            ask_id=offer_id,
        )
    now = world.sim_now
    web_password = dict(env).get("WEB_PASSWORD")
    open_button = secrets.token_hex(32)
    inst = Instance(
        id=world.next_instance_id,
        machine_id=machine.id,
        num_gpus=len(gpus),
        gpu_indexes=gpus,
        image=image.strip(),
        env=env,
        runtype=runtype,
        disk=disk,
        dph_base=price if price is not None else float(machine.base["dph_base"]),
        storage_cost=float(machine.base["storage_cost"]),
        created_at=now,
        label=label,
        onstart=onstart,
        args=args,
        is_bid=price is not None,
        template={k: template[k] for k in ("id", "hash_id", "name")} if template else None,
        jupyter_token=secrets.token_hex(32),
        api_key=secrets.token_hex(32),
        web_token=web_password or open_button,
        open_button_token=open_button,
        stuck=world.knobs.take_stuck(),
        ssh_port=world.fake_port(),  # the proxy port Vast assigns at create; real once running
    )
    world.next_instance_id += 1
    world.add_instance(inst)
    inst.log(now, "daemon", f"created from offer {offer_id} on machine {machine.id}")
    if unavailable:
        world.consume_offer(machine, gpus, Holder("renter", None, world.renter_until()))
        inst.intended = "stopped"
        inst.enter(Phase.STOPPED, now)
        inst.status_msg = "Created stopped: the machine cannot start the instance right now"
    elif target == "stopped":
        world.consume_offer(machine, [], None)
        inst.intended = "stopped"
        inst.enter(Phase.STOPPED, now)
        inst.status_msg = "Created stopped"
    else:
        world.consume_offer(machine, gpus, Holder("instance", inst.id))
        inst.enter(Phase.CREATING, now, world.knobs.durations.scheduling)
        inst.starts += 1
    return inst, world.knobs.take_create_error()


def manage_instance(world: World, inst: Instance, body: Any) -> dict[str, Any]:
    """PUT /instances/{id}/: {"state": "running"|"stopped"} and/or {"label": text}."""
    if not isinstance(body, dict) or not ({"state", "label"} & set(body)):
        raise ApiError(400, "invalid_args", "expected state or label")
    answer: dict[str, Any] = {"success": True}
    if "label" in body:
        label = body["label"]
        if label is not None and not isinstance(label, str):
            raise ApiError(400, "invalid_args", "label must be a string")
        if label is not None and len(label) > 1024:
            raise ApiError(400, "label_too_long", "label is limited to 1024 characters")
        inst.label = label or None
        world.changed = True
        answer["msg"] = f"label for {inst.id} set to {label}."
    if "state" in body:
        set_state(world, inst, body["state"])
    return answer


def set_state(world: World, inst: Instance, state: Any) -> None:
    now = world.sim_now
    if state == "running":
        if inst.phase in (Phase.STOPPED, Phase.SCHEDULING):
            _require_credit(world)
        world.start(inst, now)
    elif state == "stopped":
        world.stop(inst, now, "Container stopped by user request")
    else:
        raise ApiError(400, "invalid_args", f"state must be running or stopped, got {state!r}")


def reboot_instance(world: World, inst: Instance) -> None:
    if inst.phase is not Phase.RUNNING:
        raise ApiError(400, "invalid_args", f"Instance {inst.id} is not running.")
    inst.log(world.sim_now, "daemon", "rebooting (docker stop + start)")
    world.restart_container(inst, Phase.REBOOTING, wipe=False)


def recycle_instance(world: World, inst: Instance) -> None:
    if inst.phase not in HOLDS_GPUS:
        raise ApiError(400, "invalid_id", f"Instance {inst.id} holds no GPU to recycle on.")
    inst.log(world.sim_now, "daemon", "recycling: new container from a fresh image pull")
    world.restart_container(inst, Phase.RECYCLING, wipe=True)


# --- SSH keys ---------------------------------------------------------------------------------


def check_key(body: Any) -> str:
    text = body.get("ssh_key") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "no_ssh_key", "No ssh key provided.")
    text = text.strip()
    if not _KEY_RE.match(text):
        raise ApiError(400, "invalid_args", "ssh_key is not an OpenSSH public key")
    return text


def add_key(world: World, body: Any) -> SshKey:
    key = SshKey(id=world.next_key_id, key=check_key(body), created_at=world.sim_now)
    world.next_key_id += 1
    world.ssh_keys.append(key)
    world.changed = world.keys_changed = True
    return key


def find_key(world: World, key_id: int) -> SshKey:
    key = next((k for k in world.ssh_keys if k.id == key_id), None)
    if key is None:
        raise ApiError(404, "not_found", f"SSH key {key_id} not found.")
    return key


def update_key(world: World, key_id: int, body: Any) -> SshKey:
    key = find_key(world, key_id)
    key.key = check_key(body)
    world.changed = world.keys_changed = True
    return key


def delete_key(world: World, key_id: int) -> None:
    key = find_key(world, key_id)
    world.ssh_keys.remove(key)
    world.changed = world.keys_changed = True


def authorized_keys(world: World, inst: Instance) -> str:
    """The instance's authorized_keys: the account's keys, then keys attached to it."""
    lines = [k.key for k in world.ssh_keys] + [k["key"] for k in inst.attached_keys]
    return "".join(f"{line}\n" for line in dict.fromkeys(lines))


def attach_key(world: World, inst: Instance, body: Any) -> dict[str, Any]:
    text = check_key(body)
    entry = {"id": world.next_key_id, "key": text}
    world.next_key_id += 1
    inst.attached_keys.append(entry)
    world.changed = world.keys_changed = True
    return entry


def detach_key(world: World, inst: Instance, key_id: int) -> None:
    before = len(inst.attached_keys)
    inst.attached_keys = [k for k in inst.attached_keys if k["id"] != key_id]
    if len(inst.attached_keys) == before:
        raise ApiError(404, "not_found", f"SSH key {key_id} is not attached to {inst.id}.")
    world.changed = world.keys_changed = True
