"""What SSH commands say about an instance that is not running, per Vast state."""

from __future__ import annotations

import pytest

from comfyfleet.errors import SshUnreachable, UsageError
from comfyfleet.models.vast import Instance, instance_status
from comfyfleet.services.remote_ops import require_running
from comfyfleet.state import InstanceRow


def _row(inst: Instance) -> InstanceRow:
    status = instance_status(inst.actual_status, inst.intended_status, inst.status_msg)
    return InstanceRow(
        id=1, vast_id=inst.id, label="comfyfleet:manual:u:box", name="box", pool="manual",
        intent_id=None, status=status, actual_status=inst.actual_status,
        intended_status=inst.intended_status, status_msg=inst.status_msg, offer=None,
        image=None, disk_gb=None, gpu_name=None, num_gpus=None, machine_id=None,
        dph_total=None, storage_dph=None, public_ip=None, ssh_host=None, ssh_port=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("actual", "intended", "msg", "error", "words"),
    [
        ("running", "running", None, None, ""),
        ("exited", "stopped", None, UsageError, "is stopped"),
        ("created", "running", "OCI runtime create failed", UsageError, "failed to start"),
        ("loading", "running", None, SshUnreachable, "not running yet (loading)"),
        ("exited", "running", None, SshUnreachable, "not running yet (scheduling)"),
        ("offline", "running", None, SshUnreachable, "lost contact"),
        ("hibernating", "running", None, None, ""),  # a state this version does not know: try
    ],
)
def test_each_state_says_what_to_do(
    actual: str, intended: str, msg: str | None, error: type[Exception] | None, words: str
) -> None:
    inst = Instance(id=7, actual_status=actual, intended_status=intended, status_msg=msg)
    if error is None:
        require_running(_row(inst), inst)
        return
    with pytest.raises(error) as caught:
        require_running(_row(inst), inst)
    assert words in str(caught.value) and "instance box" in str(caught.value)
    assert getattr(caught.value, "hint", None)
