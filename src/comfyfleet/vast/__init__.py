"""Vast.ai adapter: the async REST client and typed offers/instances.

Modules: `client` (VastClient: offers, create, list/show, start/stop/label/reboot/destroy,
logs, SSH keys, the account), `http` (transport, retries, rate limits, error mapping),
`parse` (JSON -> `models.vast`, secrets dropped), `create` (what a create answer means),
`bodies` (request bodies, checked), `query` (the `vastai search offers` language),
`search` (ComfyUI offer defaults, the CUDA floor of an image), `keys` (API key discovery
and storage).
"""
