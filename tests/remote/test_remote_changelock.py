"""The instance change lock on both peers: turns, the holder named, released by a dead client."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

import pytest

from comfyfleet.errors import InstanceBusy, RemoteCommandFailed
from comfyfleet.remote.changelock import change_lock
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

CLOCK = SystemClock()


@pytest.fixture(params=["sandbox", "sshd"])
def target(request: pytest.FixtureRequest) -> SshTarget:
    return request.getfixturevalue(f"{request.param}_target")


def _layout(workspace: Path) -> InstanceLayout:
    return InstanceLayout(
        comfy_dir=PurePosixPath(workspace / "ComfyUI"),
        comfy_port=8188,
        venv=None,
        python=None,
        pip=(),
        log_file=None,
        restart_command=None,
        workspace=PurePosixPath(workspace),
        image_kind="generic",
    )


async def test_a_second_change_waits_its_turn_and_is_told_whom_for(
    target: SshTarget, tmp_path: Path
) -> None:
    layout = _layout(tmp_path)
    order: list[str] = []
    told: list[str] = []
    async with connect(target, clock=CLOCK) as first, connect(target, clock=CLOCK) as second:
        async with change_lock(first, layout, "nodes install Pack-A", wait=0) as held:
            assert held.locked and held.waited_for is None

            async def later() -> None:
                async with change_lock(
                    second, layout, "pip install x", wait=30, on_wait=told.append
                ) as lock:
                    order.append("second")
                    assert lock.waited_for is not None and "nodes install Pack-A" in lock.waited_for

            waiting = asyncio.create_task(later())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # still waiting while the first change runs
            order.append("first done")
        await asyncio.wait_for(waiting, 20)
    assert order == ["first done", "second"]
    assert len(told) == 1 and "nodes install Pack-A" in told[0] and "pid" in told[0]


async def test_waiting_too_long_names_the_holder_and_changes_nothing(
    target: SshTarget, tmp_path: Path
) -> None:
    layout = _layout(tmp_path)
    async with (
        connect(target, clock=CLOCK) as first,
        connect(target, clock=CLOCK) as second,
        change_lock(first, layout, "env apply lock.json", wait=0),
    ):
        with pytest.raises(InstanceBusy) as caught:
            async with change_lock(second, layout, "nodes rm X", wait=1):
                pytest.fail("the block must not run without the lock")
    assert "env apply lock.json" in caught.value.holder
    assert "env apply lock.json" in str(caught.value)
    assert "change_wait" in (caught.value.hint or "")
    # Released when its holder left: the lock can be taken again at once.
    async with (
        connect(target, clock=CLOCK) as third,
        change_lock(third, layout, "again", wait=0) as lock,
    ):
        assert lock.locked and lock.waited_for is None


async def test_a_client_that_vanishes_releases_the_lock(target: SshTarget, tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    first = await connect(target, clock=CLOCK)
    entered = change_lock(first, layout, "crashing", wait=0)
    await entered.__aenter__()
    first.abort()  # the connection drops without a word, as when a laptop sleeps
    async with (
        connect(target, clock=CLOCK) as second,
        change_lock(second, layout, "after the crash", wait=15) as lock,
    ):
        assert lock.locked
    # Leaving the block on a dead connection is quiet: the lock is already gone.
    assert not await entered.__aexit__(None, None, None)


async def test_an_unusable_workspace_is_a_clear_error(target: SshTarget, tmp_path: Path) -> None:
    layout = _layout(tmp_path / "no such workspace")
    async with connect(target, clock=CLOCK) as conn:
        with pytest.raises(RemoteCommandFailed) as caught:
            async with change_lock(conn, layout, "x", wait=0):
                pytest.fail("the block must not run without the lock")
    assert ".comfyfleet-change.lock" in str(caught.value)
    assert "writable" in (caught.value.hint or "")
