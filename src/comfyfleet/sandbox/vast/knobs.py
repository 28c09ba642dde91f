"""Timing and fault knobs of the simulated Vast cloud.

Every duration is in simulated seconds (the cloud's clock runs `speed` times faster than real
time), and so are the rate-limit intervals: a client that scales its polls by the sandbox's
speed meets the same limits it would meet on Vast. A `VastKnobs` may be changed from any thread;
knobs that act on one instance (offline, GPU taken, ...) are queued as `KnobAction`s and applied
by the cloud in its own event loop, before it answers the next request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Minimum seconds between calls per endpoint, as Vast's OpenAPI pages list them (UNVERIFIED
#: exact numbers); `VastKnobs.rate_limit_like_vast()` turns them on.
REFERENCE_RATE_LIMITS: dict[str, float] = {
    "create_instance": 4.5,
    "show_instance": 2.0,
    "list_instances": 1.0,
    "manage_instance": 1.0,
    "reboot_instance": 1.0,
    "recycle_instance": 1.0,
    "destroy_instance": 3.0,
    "ssh_keys": 1.0,
    "search_offers": 6.0,
    "templates": 3.0,
}

#: Instance actions the cloud applies in its loop (HTTP: POST /__sandbox/instances/{id}/{action}).
INSTANCE_ACTIONS = frozenset(
    {
        "stick",  # keep it in "loading" until unstuck
        "unstick",  # let a stuck instance finish loading
        "offline",  # its machine loses contact: actual_status "offline", host stopped
        "online",  # the machine comes back
        "take_gpus",  # another renter takes its GPUs (now if stopped, else at its next stop)
        "release_gpus",  # that renter gives them back
        "change_endpoint",  # restart its host on new ports
        "crash",  # its container dies (actual_status "exited" while intended "running")
    }
)


@dataclass(frozen=True)
class Durations:
    """How long things take, in simulated seconds (defaults: a ComfyUI image on Vast)."""

    scheduling: float = 5.0  # created (actual_status null) -> loading
    loading: float = 60.0  # image pull on first start
    cached_loading: float = 10.0  # start of a stopped instance, reboot: image already there
    provisioning: float = 90.0  # after "running", until the host's ComfyUI answers (first boot)
    reboot: float = 10.0  # "rebooting" / "recycling" before the container starts again
    renter_hold: float | None = 1800.0  # how long another renter keeps GPUs it took (None: ever)
    scheduling_timeout: float | None = None  # a start waiting for GPUs gives up (None: never)

    def updated(self, changes: Mapping[str, Any]) -> Durations:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown durations: {sorted(unknown)}; known: {sorted(known)}")
        values = {k: (None if v is None else float(v)) for k, v in changes.items()}
        for key, value in values.items():
            if value is not None and value < 0:
                raise ValueError(f"duration {key} must not be negative")
            if value is None and key not in ("renter_hold", "scheduling_timeout"):
                raise ValueError(f"duration {key} cannot be null")
        merged: dict[str, Any] = {**asdict(self), **values}
        return Durations(**merged)


@dataclass(frozen=True)
class KnobAction:
    """One queued instance action (see INSTANCE_ACTIONS)."""

    action: str
    instance_id: int


class VastKnobs:
    """Durations, fault injection and market behaviour, safe to change from any thread."""

    def __init__(self, durations: Durations | None = None) -> None:
        self._lock = threading.RLock()
        self.durations = durations or Durations()
        self.rate_limits: dict[str, float] = {}
        self.search_quota: int | None = None  # searches left today (None: unlimited)
        self._fail_statuses: list[int] = []
        self._create_errors: list[int] = []
        self.stuck_next = 0  # the next N creates stay in "loading"
        self.unavailable_next = 0  # the next N creates find their machine unable to start
        self.renter_probability = 0.0  # chance another renter takes GPUs freed by a stop
        self.logs_not_ready_polls = 2  # result_url answers 404 this many times first
        self._actions: list[KnobAction] = []
        self._credit_change: float | None = None
        self.holds: dict[str, float] = {}  # endpoint -> real seconds each answer is held

    # --- timing -----------------------------------------------------------------------------

    def set_durations(self, **changes: float | None) -> None:
        """Change durations (simulated seconds) for phases that start from now on."""
        with self._lock:
            self.durations = self.durations.updated(changes)

    # --- rate limits and quota --------------------------------------------------------------

    def rate_limit(self, endpoint: str, min_interval: float | None) -> None:
        """Answer 429 (plain text) to calls of `endpoint` closer than `min_interval` sim seconds.

        Endpoint names: search_offers, create_instance, list_instances, show_instance,
        manage_instance, destroy_instance, reboot_instance, recycle_instance, request_logs,
        attach_ssh, ssh_keys, current_user, templates, invoices, instance_filters.
        """
        with self._lock:
            if min_interval is None or min_interval <= 0:
                self.rate_limits.pop(endpoint, None)
            else:
                self.rate_limits[endpoint] = float(min_interval)

    def rate_limit_like_vast(self) -> None:
        """Turn on the per-endpoint intervals Vast documents (REFERENCE_RATE_LIMITS)."""
        with self._lock:
            self.rate_limits.update(REFERENCE_RATE_LIMITS)

    def set_search_quota(self, remaining: int | None) -> None:
        """Allow `remaining` more searches today; then 429 `search_quota_exceeded`."""
        with self._lock:
            self.search_quota = None if remaining is None else max(0, int(remaining))

    def take_search(self) -> bool:
        """Count one search; False when the daily quota is used up."""
        with self._lock:
            if self.search_quota is None:
                return True
            if self.search_quota <= 0:
                return False
            self.search_quota -= 1
            return True

    # --- slow answers ------------------------------------------------------------------------

    def hold_responses(self, endpoint: str, seconds: float | None) -> None:
        """Handle calls of `endpoint` at once but hold each answer `seconds` (REAL seconds).

        The request takes effect (a create makes its contract) while the client is still
        waiting: the window in which a client that dies leaves an untracked instance.
        Endpoint names as for `rate_limit`.
        """
        with self._lock:
            if seconds is None or seconds <= 0:
                self.holds.pop(endpoint, None)
            else:
                self.holds[endpoint] = float(seconds)

    def hold_for(self, endpoint: str | None) -> float:
        with self._lock:
            return self.holds.get(endpoint or "", 0.0)

    # --- failures ---------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 502) -> None:
        """A 5xx storm: the next `count` API requests answer `status` (a gateway error page)."""
        with self._lock:
            self._fail_statuses.extend([int(status)] * int(count))

    def take_failure(self) -> int | None:
        with self._lock:
            return self._fail_statuses.pop(0) if self._fail_statuses else None

    def fail_creates(self, count: int = 1, status: int = 500) -> None:
        """The next `count` creates answer `status` but leave the instance behind (billing)."""
        with self._lock:
            self._create_errors.extend([int(status)] * int(count))

    def take_create_error(self) -> int | None:
        with self._lock:
            return self._create_errors.pop(0) if self._create_errors else None

    def stick_next(self, count: int = 1) -> None:
        """The next `count` created instances never leave "loading" (until unstuck)."""
        with self._lock:
            self.stuck_next += int(count)

    def take_stuck(self) -> bool:
        with self._lock:
            if self.stuck_next > 0:
                self.stuck_next -= 1
                return True
            return False

    def make_unavailable(self, count: int = 1) -> None:
        """The next `count` creates find the machine unable to start them right now.

        With cancel_unavail (the on-demand default) the create answers 410 `no_such_ask`;
        without it the instance is created stopped, its GPUs held by another renter.
        """
        with self._lock:
            self.unavailable_next += int(count)

    def take_unavailable(self) -> bool:
        with self._lock:
            if self.unavailable_next > 0:
                self.unavailable_next -= 1
                return True
            return False

    def set_renter_probability(self, probability: float) -> None:
        """Chance (0..1) that another renter takes the GPUs a stop releases."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("renter probability must be between 0 and 1")
        with self._lock:
            self.renter_probability = float(probability)

    def set_logs_not_ready_polls(self, polls: int) -> None:
        with self._lock:
            self.logs_not_ready_polls = max(0, int(polls))

    # --- queued actions ---------------------------------------------------------------------

    def instance_action(self, action: str, instance_id: int) -> None:
        """Queue an instance action (INSTANCE_ACTIONS); the cloud applies it in its loop."""
        if action not in INSTANCE_ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {sorted(INSTANCE_ACTIONS)}")
        with self._lock:
            self._actions.append(KnobAction(action, int(instance_id)))

    def set_credit(self, dollars: float) -> None:
        """Set the account's credit (applied in the cloud's loop)."""
        with self._lock:
            self._credit_change = float(dollars)

    def drain(self) -> tuple[list[KnobAction], float | None]:
        """Queued actions and a pending credit change, removed from the queue."""
        with self._lock:
            actions, self._actions = self._actions, []
            credit, self._credit_change = self._credit_change, None
            return actions, credit

    def reset(self) -> None:
        """Forget every fault (durations stay)."""
        with self._lock:
            self.rate_limits.clear()
            self.search_quota = None
            self._fail_statuses.clear()
            self._create_errors.clear()
            self.stuck_next = 0
            self.unavailable_next = 0
            self.renter_probability = 0.0
            self.holds.clear()

    # --- HTTP control ------------------------------------------------------------------------

    def apply(self, body: Mapping[str, Any]) -> None:
        """Apply a JSON body from POST /__sandbox/knobs (keys as in `snapshot`)."""
        handlers: dict[str, Callable[[Any], None]] = {
            "durations": lambda v: self.set_durations(**dict(v)),
            "rate_limits": self._apply_rate_limits,
            "search_quota": self.set_search_quota,
            "fail_next": lambda v: self.fail_next(
                int(v.get("count", 1)), int(v.get("status", 502))
            ),
            "fail_creates": lambda v: self.fail_creates(
                int(v.get("count", 1)), int(v.get("status", 500))
            ),
            "stick_next": lambda v: self.stick_next(int(v)),
            "make_unavailable": lambda v: self.make_unavailable(int(v)),
            "renter_probability": lambda v: self.set_renter_probability(float(v)),
            "logs_not_ready_polls": self.set_logs_not_ready_polls,
            "credit": lambda v: self.set_credit(float(v)),
            "hold_responses": self._apply_holds,
            "reset": lambda v: self.reset() if v else None,
        }
        unknown = set(body) - set(handlers)
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(handlers)}")
        for key, value in body.items():
            handlers[key](value)

    def _apply_holds(self, value: Any) -> None:
        for endpoint, seconds in dict(value).items():
            self.hold_responses(str(endpoint), None if seconds is None else float(seconds))

    def _apply_rate_limits(self, value: Any) -> None:
        if value == "vast":
            self.rate_limit_like_vast()
            return
        if not isinstance(value, Mapping):
            raise ValueError('rate_limits must be an object {endpoint: seconds} or "vast"')
        for endpoint, interval in value.items():
            self.rate_limit(str(endpoint), None if interval is None else float(interval))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "durations": asdict(self.durations),
                "rate_limits": dict(self.rate_limits),
                "search_quota": self.search_quota,
                "fail_next": list(self._fail_statuses),
                "fail_creates": list(self._create_errors),
                "stick_next": self.stuck_next,
                "make_unavailable": self.unavailable_next,
                "renter_probability": self.renter_probability,
                "logs_not_ready_polls": self.logs_not_ready_polls,
                "hold_responses": dict(self.holds),
            }
