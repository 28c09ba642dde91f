"""Custom node packs, loaded from `<root>/custom_nodes` the way ComfyUI 0.3.64 loads them.

At start, before the server listens (so a restart picks up what was added since):

1. `run_prestartup_scripts`: the `prestartup_script.py` of every pack folder is executed
   (`Failed to execute startup-script: <path> / <error>` when it raises), then the
   `Prestartup times for custom nodes:` block is logged.
2. `load_packs`: every entry of custom_nodes/ except `__pycache__`, names ending in
   `.disabled` and files that are not `.py` is imported as a real module in this interpreter
   (a folder through its `__init__.py`, as `sys.modules[<path with "." as "_x_">]`, so relative
   imports work). A module exporting `NODE_CLASS_MAPPINGS` adds its classes (a name the server
   already has is ignored: packs cannot replace built-in nodes; a later pack replaces an
   earlier one's), `NODE_DISPLAY_NAME_MAPPINGS` their display names, and `WEB_DIRECTORY` a
   folder served under `/extensions/<pack>/`. A module without mappings logs
   `Skip <path> module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or NODES_LIST
   (need one).`; an exception logs its traceback, then `Cannot import <path> module for custom
   nodes: <error>`. Both count as ` (IMPORT FAILED)` in the `Import times for custom nodes:`
   block, whose lines are `"{:6.1f} seconds{}: {}"` sorted by time. A V3 `comfy_entrypoint`
   cannot return a ComfyUI extension object here, so such a pack is skipped with ComfyUI's
   warning for that case.

`disable_all` and `whitelist` are `--disable-all-custom-nodes` / `--whitelist-custom-nodes`.
Entries are visited in sorted order (ComfyUI takes the directory's order).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfleet.graph.custom import CustomValidation
from comfyfleet.sandbox.comfy.logbook import LogBook
from comfyfleet.sandbox.comfy.nodes_base import NodeImpl
from comfyfleet.sandbox.comfy.pack_nodes import node_info, pack_impl, pack_validation

#: The frame ComfyUI's own import call shows at the top of a pack's import traceback.
_LOADER_FRAME = ("nodes.py", 2131, "load_custom_node", "module_spec.loader.exec_module(module)")


@dataclass
class PackSet:
    """The node classes, display names and web folders the custom node packs brought."""

    classes: dict[str, type] = field(default_factory=dict)  # class name -> class, load order
    display_names: dict[str, str] = field(default_factory=dict)
    web_dirs: dict[str, Path] = field(default_factory=dict)  # pack name -> its web folder
    modules: list[str] = field(default_factory=list)  # sys.modules names the packs took

    def object_info(self, on_error: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Each class's /object_info entry; a class whose entry fails is left out (and
        reported through `on_error` with ComfyUI's log text)."""
        out: dict[str, Any] = {}
        for name, cls in self.classes.items():
            try:
                out[name] = node_info(name, cls, self.display_names)
            except Exception:  # noqa: BLE001 - a broken pack class must not break the route
                if on_error is not None:
                    on_error(
                        f"[ERROR] An error occurred while retrieving information for the "
                        f"'{name}' node.\n" + traceback.format_exc()
                    )
        return out

    def validations(self) -> dict[str, CustomValidation]:
        """The VALIDATE_INPUTS hooks of the pack classes that have one."""
        hooks = {name: pack_validation(cls) for name, cls in self.classes.items()}
        return {name: hook for name, hook in hooks.items() if hook is not None}

    def implementation(self, class_type: str) -> NodeImpl | None:
        cls = self.classes.get(class_type)
        return None if cls is None else pack_impl(cls)

    def unload(self) -> None:
        """Forget the packs' modules, so the next start imports them afresh."""
        for name in self.modules:
            prefix = name + "."
            for key in [k for k in sys.modules if k == name or k.startswith(prefix)]:
                del sys.modules[key]
        self.modules.clear()


def _entries(folder: Path) -> Iterator[tuple[str, Path]]:
    if not folder.is_dir():
        return
    for name in sorted(os.listdir(folder)):
        if name != "__pycache__":
            yield name, folder / name


def _times_block(title: str, failed: str, times: list[tuple[float, str, bool]]) -> str:
    lines = [f"\n{title}"]
    for seconds, path, ok in sorted(times):
        lines.append(f"{seconds:6.1f} seconds{'' if ok else failed}: {path}")
    return "\n".join(lines) + "\n\n"


def run_prestartup_scripts(
    folder: Path, book: LogBook, *, disable_all: bool = False, whitelist: Collection[str] = ()
) -> None:
    """Execute every pack's `prestartup_script.py` and log the prestartup times."""
    if disable_all and not whitelist:
        return
    times: list[tuple[float, str, bool]] = []
    for name, path in _entries(folder):
        script = path / "prestartup_script.py"
        if path.is_file() or name.endswith(".disabled") or not script.exists():
            continue
        if disable_all and name not in whitelist:
            book.line(
                f"Prestartup Skipping {name} due to disable_all_custom_nodes and "
                "whitelist_custom_nodes"
            )
            continue
        started = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(os.path.splitext(script)[0], script)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {script}")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            ok = True
        except Exception as exc:  # noqa: BLE001 - ComfyUI reports any failure this way
            book.line(f"Failed to execute startup-script: {script} / {exc}")
            ok = False
        times.append((time.perf_counter() - started, str(path), ok))
    if times:
        book.write(
            _times_block("Prestartup times for custom nodes:", " (PRESTARTUP FAILED)", times)
        )


async def load_packs(
    folder: Path,
    builtin: Collection[str],
    book: LogBook,
    *,
    root: Path,
    disable_all: bool = False,
    whitelist: Collection[str] = (),
) -> PackSet:
    """Import every pack of `folder`; classes named in `builtin` are ignored."""
    packs = PackSet()
    if disable_all and not whitelist:
        book.line("Skipping loading of custom nodes")
        return packs
    times: list[tuple[float, str, bool]] = []
    for name, path in _entries(folder):
        if (path.is_file() and path.suffix != ".py") or name.endswith(".disabled"):
            continue
        if disable_all and name not in whitelist:
            book.line(f"Skipping {name} due to disable_all_custom_nodes and whitelist_custom_nodes")
            continue
        started = time.perf_counter()
        ok = await _load_one(path, builtin, packs, book, root)
        times.append((time.perf_counter() - started, str(path), ok))
    if times:
        book.write(_times_block("Import times for custom nodes:", " (IMPORT FAILED)", times))
    return packs


async def _load_one(
    path: Path, builtin: Collection[str], packs: PackSet, book: LogBook, root: Path
) -> bool:
    module_path = str(path)
    is_file = path.is_file()
    pack_name = path.stem if is_file else path.name
    # ComfyUI's module names: a file's path without ".py", a folder's path with "." as "_x_".
    if is_file:
        sys_name, init, module_dir = os.path.splitext(module_path)[0], module_path, path.parent
    else:
        sys_name, init, module_dir = module_path.replace(".", "_x_"), f"{path}/__init__.py", path
    try:
        spec = importlib.util.spec_from_file_location(sys_name, init)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {init}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_name] = module
        packs.modules.append(sys_name)
        spec.loader.exec_module(module)
        web = getattr(module, "WEB_DIRECTORY", None)
        if web is not None and os.path.isdir(os.path.abspath(os.path.join(module_dir, web))):
            packs.web_dirs[pack_name] = Path(os.path.abspath(os.path.join(module_dir, web)))
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if mappings is not None:
            _register(packs, mappings, builtin, f"custom_nodes.{pack_name}")
            display = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None)
            if display is not None:
                packs.display_names.update(display)
            return True
        if hasattr(module, "comfy_entrypoint"):
            return await _entrypoint(module.comfy_entrypoint, module_path, book)
        book.line(
            f"Skip {module_path} module for custom nodes due to the lack of "
            "NODE_CLASS_MAPPINGS or NODES_LIST (need one)."
        )
        return False
    except Exception as exc:  # noqa: BLE001 - any failure of a pack is reported, never raised
        book.write(_import_traceback(root, exc) + "\n")
        book.line(f"Cannot import {module_path} module for custom nodes: {exc}")
        return False


def _register(
    packs: PackSet, mappings: Mapping[str, Any], builtin: Collection[str], python_module: str
) -> None:
    for name, cls in mappings.items():
        if name in builtin:
            continue
        packs.classes[name] = cls
        # ComfyUI records where a class came from on the class itself.
        cls.RELATIVE_PYTHON_MODULE = python_module


async def _entrypoint(entrypoint: Any, module_path: str, book: LogBook) -> bool:
    if not callable(entrypoint):
        book.line(f"comfy_entrypoint in {module_path} is not callable, skipping.")
        return False
    try:
        extension = entrypoint()
        if inspect.isawaitable(extension):
            await extension
    except Exception as exc:  # noqa: BLE001 - reported as ComfyUI does
        book.line(f"Error while calling comfy_entrypoint in {module_path}: {exc}")
        return False
    # Without comfy_api nothing can be a ComfyExtension: ComfyUI's answer to anything else.
    book.line(f"comfy_entrypoint in {module_path} did not return a ComfyExtension, skipping.")
    return False


def _import_traceback(root: Path, exc: BaseException) -> str:
    """The traceback ComfyUI logs: its loader's frame, then the import's own frames."""
    report = traceback.TracebackException.from_exception(exc)
    file, line, func, code = _LOADER_FRAME
    loader = traceback.FrameSummary(str(root / file), line, func, line=code)
    report.stack = traceback.StackSummary.from_list([loader, *report.stack[1:]])
    return "".join(report.format())
