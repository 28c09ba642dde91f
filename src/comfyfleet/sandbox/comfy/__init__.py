"""A ComfyUI server simulation faithful to the captured fixtures (aiohttp, like ComfyUI)."""
