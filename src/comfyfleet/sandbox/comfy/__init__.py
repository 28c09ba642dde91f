"""A ComfyUI server simulation faithful to the captured fixtures (aiohttp, like ComfyUI).

`SandboxComfy(root, host=, port=, speed=, knobs=, device_name=, preview_method=, log_file=,
persisted_queue=, disable_custom_nodes=, custom_node_whitelist=)` serves ComfyUI 0.3.64's
HTTP and WebSocket API on loopback over a ComfyUI-like folder (`layout`): same routes (plain
and `/api`), status codes, bodies, event order, queue/history/cache semantics. Image nodes
run for real with Pillow; model nodes are timed stand-ins on a clock running `speed`
simulated seconds per real second. Custom node packs in `<root>/custom_nodes` are imported at
every start and their nodes run for real (`packs`, `pack_nodes`). In persisted-queue mode the
queue lives in `<root>/user/queue.db`, and a corrupt one hangs the queue (`queuestore`).

Knobs (`Knobs`, Python API; the same over HTTP at `/__sandbox/knobs`, see `routes_control`):

* `set_duration(class_type, seconds)` - simulated seconds a node class takes (samplers: per
  step). Defaults: sampler steps 0.5 s, loaders 2 s, VAE decode/encode 1 s, text encode 0.1 s,
  image and other nodes 0.05 s.
* `slow(target, seconds)` - a node (class or node id) takes `seconds`, reporting progress in
  steps (about one second each; a sampler spreads them over its own steps), so interrupts
  still take effect between steps.
* `hang(target)` / `release(target=None)` - a node never finishes and ignores interrupts (a
  stuck CUDA call) until released; the queue behind it waits.
* `crash(target, exception_type, message)` - a node raises half-way through its run; the
  prompt ends with `execution_error` carrying that type and message.
* `enable_previews(method)` - sampler previews as `--preview-method` (default "none": none).
* `fail_requests(count, status)` - the next `count` HTTP requests (WebSocket upgrades included,
  `/__sandbox/` excluded) answer `status` (500 with aiohttp's text, other codes empty).
* `drop_websockets(after=0)` - abort every WebSocket transport (no close frame) now, or right
  after `after` more frames have been sent.
* `refuse_connections(seconds=None)` / `accept_connections()` - stop listening (open
  connections are cut, new ones refused) and come back on the same port, after `seconds`
  (simulated) or when told.
* `forge_output_names(subfolder, filename)` - a hostile server: every output file is reported
  under this subfolder and name (e.g. `../../etc`, `passwd`) in `executed` and the history.
* `persist_queue(enabled=True)` - switch the persisted-queue mode (kept by `reset`).
* `corrupt_queue_db()` - write garbage over `user/queue.db` and its journal: a server in
  persisted-queue mode takes its next item into `queue_running` and hangs there (the GPU
  stays idle) until the files are removed and it restarts.
* `reset()` - forget every fault (durations stay).
* `Knobs(probe_node=True)` - also offer the `ProgressProbe` test node of the fixtures' second
  run (progress with previews and a progress text).
"""

from comfyfleet.sandbox.comfy.knobs import Crash, Knobs
from comfyfleet.sandbox.comfy.server import SandboxComfy, SandboxHandle, serve

__all__ = ["Crash", "Knobs", "SandboxComfy", "SandboxHandle", "serve"]
