"""A simulated Vast.ai cloud, faithful enough that the official `vastai` CLI works against it.

It serves Vast's REST API (reference/vast-api.md) on loopback with a market of offers (the
captured fixture offers plus machines generated from a seed), instances that move through
Vast's lifecycle on an accelerated clock, per-second billing of the account's credit, fault
knobs, state that survives a restart, and one sandbox host process per running instance.

    from comfyfleet.sandbox.vast.server import SandboxVast
    async with SandboxVast(speed=200) as cloud:      # hosts off: made-up ports
        ...  # point a Vast client at cloud.url with cloud.api_key

Modules: `server` (the aiohttp app and its clockwork), `world` (state, lifecycle, billing),
`market` and `catalog` (offers), `query` (Vast's filter language), `actions` (what each
request does), `render` (wire shapes), `knobs` (timing and faults), `hosts` (host processes),
`store` (persistence), `process` (state dir, detached server, status and stop).

Hosts: with `hosts=False` (the default of `SandboxVast`, and `--no-hosts` for the process) no
host process starts; a running instance reports made-up ports nothing listens on. Use it
wherever a test needs only the API; start real hosts where it needs SSH or the proxy.
"""
