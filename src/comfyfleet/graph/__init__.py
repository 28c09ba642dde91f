"""ComfyUI prompt-graph semantics (pure): validation as the server performs it.

Shared by the offline validator and the sandbox server, so both give ComfyUI's own errors.
"""
