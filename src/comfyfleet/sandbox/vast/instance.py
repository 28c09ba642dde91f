"""One rented instance: its phase in the lifecycle, what it was created with, what it cost.

Phases and the Vast fields they show (reference §6):

    phase        actual_status  intended  cur_state  billed at
    creating     null           running   running    storage
    loading      "loading"      running   running    storage (image pull; status_msg progress)
    starting     "loading"      running   running    storage (the host is being launched)
    running      "running"      running   running    dph_total
    rebooting    "rebooting"    running   running    dph_total (keeps its GPUs)
    recycling    "recycling"    running   running    storage, then loading again
    scheduling   "exited"       running   stopped    storage (waits for its GPUs to be free)
    stopped      "exited"       stopped   stopped    storage (GPUs released)
    offline      "offline"      either    either     storage (its machine lost contact)
    failed       "created"      running   running    storage (the container did not start)
    crashed      "exited"       running   running    storage (the container died)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from comfyfleet.sandbox.vast.errors import ApiError


class Phase(StrEnum):
    CREATING = "creating"
    LOADING = "loading"
    STARTING = "starting"
    RUNNING = "running"
    REBOOTING = "rebooting"
    RECYCLING = "recycling"
    SCHEDULING = "scheduling"
    STOPPED = "stopped"
    OFFLINE = "offline"
    FAILED = "failed"
    CRASHED = "crashed"


ACTUAL_STATUS: dict[Phase, str | None] = {
    Phase.CREATING: None,
    Phase.LOADING: "loading",
    Phase.STARTING: "loading",
    Phase.RUNNING: "running",
    Phase.REBOOTING: "rebooting",
    Phase.RECYCLING: "recycling",
    Phase.SCHEDULING: "exited",
    Phase.STOPPED: "exited",
    Phase.OFFLINE: "offline",
    Phase.FAILED: "created",
    Phase.CRASHED: "exited",
}
#: Phases in which the instance holds its GPUs.
HOLDS_GPUS = frozenset(
    {
        Phase.CREATING,
        Phase.LOADING,
        Phase.STARTING,
        Phase.RUNNING,
        Phase.REBOOTING,
        Phase.RECYCLING,
        Phase.FAILED,
        Phase.CRASHED,
    }
)
#: Phases billed at dph_total; every other phase pays storage only.
COMPUTE_BILLED = frozenset({Phase.RUNNING, Phase.REBOOTING})
#: Phases with a container whose host process should be up.
HOST_UP = frozenset({Phase.RUNNING})

#: Runtype tokens Vast accepts; "_direct" is normalised to the "_direc" spelling it echoes.
RUNTYPE_TOKENS = frozenset(
    {"ssh", "ssh_proxy", "ssh_direc", "jupyter", "jupyter_proxy", "jupyter_direc", "args"}
)


@dataclass
class Instance:
    id: int
    machine_id: int
    num_gpus: int
    gpu_indexes: list[int]
    image: str
    env: list[list[str]]  # as sent, in order: Vast echoes it back as extra_env pairs
    runtype: str
    disk: float
    dph_base: float  # locked at create (the bid price for interruptible instances)
    storage_cost: float
    created_at: float
    label: str | None = None
    onstart: str | None = None
    args: list[str] = field(default_factory=list)
    is_bid: bool = False
    template: dict[str, Any] | None = None  # id, hash_id, name of the template used
    jupyter_token: str = ""
    api_key: str = ""  # CONTAINER_API_KEY
    web_token: str = ""  # what the host's proxy accepts (WEB_PASSWORD, else OPEN_BUTTON_TOKEN)
    open_button_token: str = ""
    phase: Phase = Phase.CREATING
    phase_since: float = 0.0
    phase_duration: float | None = None  # None: no deadline
    intended: str = "running"
    status_msg: str | None = None
    running_since: float | None = None
    stuck: bool = False
    give_gpus_on_stop: bool = False  # "take_gpus" armed while it still held them
    attached_keys: list[dict[str, Any]] = field(default_factory=list)  # {"id", "key"}
    ports: dict[str, int] | None = None  # "8188/tcp" -> host port, while running
    ssh_port: int = 0  # the "proxy" SSH endpoint (Vast's sshN.vast.ai:port)
    host_generation: int = 0
    host_pid: int | None = None
    starts: int = 0
    ran: bool = False  # its container has run at least once (disk in use)
    cost_compute: float = 0.0
    cost_storage: float = 0.0
    events: list[list[Any]] = field(default_factory=list)  # [sim time, "daemon"|"container", text]

    @property
    def actual_status(self) -> str | None:
        return ACTUAL_STATUS[self.phase]

    @property
    def storage_dph(self) -> float:
        return self.storage_cost * self.disk / 720.0

    @property
    def rate(self) -> float:
        """$/hour this instance costs right now."""
        compute = self.dph_base if self.phase in COMPUTE_BILLED else 0.0
        return compute + self.storage_dph

    def enter(self, phase: Phase, now: float, duration: float | None = None) -> None:
        self.phase, self.phase_since, self.phase_duration = phase, now, duration

    def deadline(self) -> float | None:
        if self.phase_duration is None or (self.stuck and self.phase is Phase.LOADING):
            return None
        return self.phase_since + self.phase_duration

    def log(self, now: float, source: str, text: str) -> None:
        self.events.append([round(now, 3), source, text])
        del self.events[:-500]

    def user_env(self) -> dict[str, str]:
        """Environment variables from `env` (docker flags such as "-p 8188:8188" left out)."""
        return {k: v for k, v in self.env if not k.startswith("-")}

    def requested_ports(self) -> list[str]:
        """Container ports to publish ("8188/tcp"), from -p flags and the direct runtypes."""
        out: list[str] = []
        tokens = self.runtype.split()
        if "ssh_direc" in tokens:
            out.append("22/tcp")
        if "jupyter_direc" in tokens:
            out.append("8080/tcp")
        for key, _ in self.env:
            if key.startswith("-p "):
                spec = key[3:].strip()
                inner = spec.split(":")[-1]
                port, _, proto = inner.partition("/")
                name = f"{port}/{proto or 'tcp'}"
                if port.isdigit() and name not in out:
                    out.append(name)
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return cls(**{**data, "phase": Phase(data["phase"])})


def normalise_runtype(value: Any) -> str:
    """A runtype string as Vast echoes it in image_runtype; 400 for unknown tokens."""
    if value is None or value == "":
        return "ssh ssh_proxy"
    if not isinstance(value, str):
        raise ApiError(400, "invalid_args", f"runtype must be a string, got {value!r}")
    tokens = [t.replace("_direct", "_direc") for t in value.split()]
    bad = [t for t in tokens if t not in RUNTYPE_TOKENS]
    if bad:
        raise ApiError(400, "invalid_args", f"invalid runtype {value!r}: unknown {bad}")
    if tokens == ["ssh"]:
        tokens = ["ssh", "ssh_proxy"]
    return " ".join(tokens)


def parse_env(value: Any) -> list[list[str]]:
    """The create body's env: an object (what clients send) or a docker-flag string (templates).

    Limits from the reference: each value at most 256 characters, 32768 in all.
    """
    pairs: list[list[str]] = []
    if value is None:
        return pairs
    if isinstance(value, dict):
        pairs = [[str(k), "" if v is None else str(v)] for k, v in value.items()]
    elif isinstance(value, str):
        pairs = _parse_env_flags(value)
    else:
        raise ApiError(400, "invalid_args", "env must be an object of variables and port flags")
    if any(len(v) > 256 for _, v in pairs):
        raise ApiError(400, "invalid_args", "env values are limited to 256 characters")
    if sum(len(k) + len(v) for k, v in pairs) > 32768:
        raise ApiError(400, "invalid_args", "env is limited to 32768 characters in all")
    return pairs


def _parse_env_flags(text: str) -> list[list[str]]:
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ApiError(400, "invalid_args", f"cannot parse env string: {exc}") from exc
    pairs: list[list[str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        arg = words[i + 1] if i + 1 < len(words) else ""
        if word == "-e":
            key, _, val = arg.partition("=")
            pairs.append([key, val])
            i += 2
        elif word in ("-p", "-v", "-n"):
            pairs.append([f"{word} {arg}", "1"])
            i += 2
        elif word == "-h":
            pairs.append(["-h", arg])
            i += 2
        else:
            i += 1
    return pairs
