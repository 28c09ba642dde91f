"""ComfyUI prompt-graph semantics (pure): validation as the server performs it.

Shared by the offline validator and the sandbox server, so both give ComfyUI's own errors.

- `validate`: `validate_prompt`, ComfyUI 0.3.64's answer to POST /prompt.
- `custom`: node validation hooks (`VALIDATE_INPUTS`) of the stock nodes, and the hook type.
- `model_folders`: which inputs name model files, ComfyUI's model folders and extensions.
- `input_files`: which inputs name files of the input folder (LoadImage and friends).
- `prompt`: links, titles and type compatibility in API-format prompts.
"""
