"""The sandbox's df shim: the machine's answer, its free space cut as the knob says."""

from __future__ import annotations

from comfyfleet.remote.parsing import parse_df
from comfyfleet.sandbox.host.diskfill import run_df, squeeze

OUT = (
    "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
    "/dev/vda1        264108036  23799596 82564644      23% /\n"
)


def test_squeeze_leaves_the_asked_free_space_and_counts_the_rest_used() -> None:
    squeezed = squeeze(OUT, 2 * 1024**3, ["-P", "-k", "--", "/"])
    usage = parse_df("/", squeezed)
    assert usage is not None
    assert usage.available_bytes == 2 * 1024**3 and usage.total_bytes == 264108036 * 1024
    assert usage.used_bytes == usage.total_bytes - usage.available_bytes
    assert usage.used_pct == 100 and usage.mounted_on == "/"
    assert squeezed.splitlines()[0] == OUT.splitlines()[0]  # the header as it was
    roomy = parse_df("/", squeeze(OUT, 10**15, ["-P", "-k", "/"]))
    assert roomy is not None and roomy.available_bytes == 82564644 * 1024  # never more than real


def test_the_real_df_answers_unchanged_without_the_knob() -> None:
    code, out, _ = run_df(["-P", "-k", "--", "/"], None)
    usage = parse_df("/", out)
    assert code == 0 and usage is not None and usage.total_bytes > 0
    code, out, _ = run_df(["-P", "-k", "--", "/"], 5 * 1024**2)
    cut = parse_df("/", out)
    assert code == 0 and cut is not None and cut.available_bytes <= 5 * 1024**2
