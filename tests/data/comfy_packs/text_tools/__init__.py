"""text_tools: a tiny ComfyUI node pack (V1 node API) that the sandbox ComfyUI runs for real.

Text, integer and float nodes, a node that draws an IMAGE (as the sandbox's `values.Images`),
a list-producing node, and a web extension.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
