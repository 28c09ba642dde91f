"""The widgets each input type creates, as the editor's widget constructors create them.

The main widget comes first, then its helpers: a `control_after_generate` combo (never sent)
after seed-like INTs and controlled combos, a filter string after controlled combos, a
`refresh` button after remote combos. Upload inputs create a button that is never sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from comfyfleet.comfy.workflow.convert_js import UNDEFINED, is_nullish, truthy
from comfyfleet.comfy.workflow.ui_widget import Widget

#: Widget types whose value only exists in a browser (camera frames, rendered 3D scenes).
BROWSER_ONLY_WIDGETS = frozenset({"WEBCAM", "LOAD_3D", "LOAD_3D_ANIMATION"})
#: Widget constructors the editor's core offers (custom extension widgets are not among them).
CORE_WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "MARKDOWN",
        "COMBO",
        "IMAGEUPLOAD",
        "FILEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "TREESELECT",
        "MULTISELECT",
        "CHART",
        "GALLERIA",
        "SELECTBUTTON",
        "TEXTAREA",
    }
)
#: Every widget constructor the editor knows, extension-provided ones included.
WIDGET_TYPES = CORE_WIDGET_TYPES | {
    "AUDIO_UI",
    "AUDIOUPLOAD",
    "AUDIO_RECORD",
    "PREVIEW_3D",
    "PREVIEW_3D_ANIMATION",
    *BROWSER_ONLY_WIDGETS,
}


def make_widgets(spec: Mapping[str, Any], name: str | None = None) -> list[Widget]:
    """The widgets one input creates: the main widget first, then its helpers."""
    wtype = spec.get("widgetType") or spec.get("type")
    name = name if name is not None else str(spec.get("name", ""))
    spec = dict(spec)
    factory = _FACTORIES.get(str(wtype))
    if factory is None:
        return [Widget(name, str(wtype).lower(), spec, _value=None)]
    return factory(name, spec)


def _number_kind(spec: Mapping[str, Any]) -> str:
    display = spec.get("display")
    return "slider" if display == "slider" else "knob" if display == "knob" else "number"


def _control(spec: Mapping[str, Any], default: str, with_filter: bool) -> list[Widget]:
    control = Widget("control_after_generate", "combo", {}, in_prompt=False, _value=default)
    if not with_filter:
        return [control]
    return [control, Widget("control_filter_list", "text", {}, in_prompt=False, _value="")]


def _int_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    default = spec.get("default")
    main = Widget(name, _number_kind(spec), spec, _value=0 if is_nullish(default) else default)
    wanted = spec.get("control_after_generate")
    if is_nullish(wanted):
        wanted = name in ("seed", "noise_seed")
    if truthy(wanted):
        main.linked = _control(spec, "randomize", with_filter=False)
    return [main, *main.linked]


def _float_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    default = spec.get("default")
    return [Widget(name, _number_kind(spec), spec, _value=0 if is_nullish(default) else default)]


def _bool_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    default = spec.get("default")
    return [Widget(name, "toggle", spec, _value=False if is_nullish(default) else default)]


def _string_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    default = spec.get("default")
    default = "" if is_nullish(default) else default
    if spec.get("multiline"):
        widget = Widget(name, "customtext", spec, storage="text")
        widget.value = default
    else:
        widget = Widget(name, "text", spec, _value=default)
    if spec.get("dynamicPrompts") is True:
        widget.serializer = "dynamic_prompts"
    return [widget]


def _markdown_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    widget = Widget(name, "markdown", spec, storage="text")
    default = spec.get("default")
    widget.value = "" if is_nullish(default) else default
    return [widget]


def _combo_widget(name: str, spec: dict[str, Any]) -> list[Widget]:
    if spec.get("multi_select"):
        return [Widget(name, "multiselect", spec, _value=[])]
    options = spec.get("options") or []
    if truthy(spec.get("default")):
        default: Any = spec["default"]
    elif options:
        default = options[0]
    elif spec.get("remote"):
        default = "Loading..."
    else:
        default = UNDEFINED
    main = Widget(name, "combo", spec, _value=default)
    widgets = [main]
    remote = spec.get("remote")
    if isinstance(remote, Mapping) and remote.get("refresh_button"):
        # The refresh button carries no serialize flag, so the prompt gets "refresh": "refresh".
        widgets.append(Widget("refresh", "button", {}, _value="refresh"))
    if truthy(spec.get("control_after_generate")):
        main.linked = _control(spec, "randomize", with_filter=True)
        widgets += main.linked
    return widgets


def _button(value: Any) -> Callable[[str, dict[str, Any]], list[Widget]]:
    def factory(name: str, spec: dict[str, Any]) -> list[Widget]:
        return [Widget(name, "button", spec, in_prompt=False, _value=value)]

    return factory


def _plain(kind: str, default: Callable[[dict[str, Any]], Any]) -> Callable[..., list[Widget]]:
    def factory(name: str, spec: dict[str, Any]) -> list[Widget]:
        return [Widget(name, kind, spec, _value=default(spec))]

    return factory


def _empty(kind: str, in_workflow: bool) -> Callable[[str, dict[str, Any]], list[Widget]]:
    def factory(name: str, spec: dict[str, Any]) -> list[Widget]:
        return [Widget(name, kind, spec, in_workflow=in_workflow, storage="empty")]

    return factory


def _option(key: str, fallback: Any) -> Callable[[dict[str, Any]], Any]:
    def pick(spec: dict[str, Any]) -> Any:
        options = spec.get("options")
        value = options.get(key) if isinstance(options, Mapping) else None
        return copy.deepcopy(fallback) if not truthy(value) else value

    return pick


def _first_choice(spec: dict[str, Any]) -> Any:
    values = _option("values", [])(spec)
    return values[0] if values and truthy(values[0]) else ""


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], list[Widget]]] = {
    "INT": _int_widget,
    "FLOAT": _float_widget,
    "BOOLEAN": _bool_widget,
    "STRING": _string_widget,
    "MARKDOWN": _markdown_widget,
    "COMBO": _combo_widget,
    "IMAGEUPLOAD": _button("image"),
    "AUDIOUPLOAD": _button(""),
    "FILEUPLOAD": _plain("fileupload", lambda spec: ""),
    "COLOR": _plain("color", lambda spec: spec.get("default") or "#000000"),
    "IMAGECOMPARE": _plain("imagecompare", lambda spec: ["", ""]),
    "TREESELECT": _plain("treeselect", lambda spec: [] if _option("multiple", False)(spec) else ""),
    "MULTISELECT": _plain("multiselect", lambda spec: []),
    "CHART": _plain("chart", _option("data", {})),
    "GALLERIA": _plain("galleria", _option("images", [])),
    "SELECTBUTTON": _plain("selectbutton", _first_choice),
    "TEXTAREA": _plain("textarea", lambda spec: spec.get("default") or ""),
    "AUDIO_UI": _empty("audioUI", in_workflow=False),
    "PREVIEW_3D": _empty("custom", in_workflow=True),
    "PREVIEW_3D_ANIMATION": _empty("custom", in_workflow=True),
}


def _audio_record(name: str, spec: dict[str, Any]) -> list[Widget]:
    player = Widget("audioUI", "audioUI", spec, storage="empty")
    return [player, Widget(name, "button", spec, in_prompt=False, _value="")]


_FACTORIES["AUDIO_RECORD"] = _audio_record


def widget_constructor_exists(spec: Mapping[str, Any]) -> bool:
    return str(spec.get("widgetType") or spec.get("type")) in WIDGET_TYPES
