"""ComfyUI adapter: the async HTTP/WebSocket client and the workflow tools."""
