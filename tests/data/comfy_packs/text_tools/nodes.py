"""The node classes of text_tools."""

from __future__ import annotations

from PIL import Image, ImageDraw

from comfyfleet.sandbox.comfy.values import Images


class Repeat:
    DESCRIPTION = "Repeats a text."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "hello"}),
                "times": ("INT", {"default": 2, "min": 1, "max": 10}),
            },
            "optional": {"separator": ("STRING", {"default": " "})},
        }

    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("text", "length")
    FUNCTION = "repeat"
    CATEGORY = "text_tools"

    def repeat(self, text, times, separator=" "):
        out = separator.join([text] * times)
        return (out, len(out))

    @classmethod
    def VALIDATE_INPUTS(cls, text):
        if "forbidden" in text:
            return "the word 'forbidden' is not allowed"
        return True


class Scale:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "number": ("INT", {"forceInput": True}),
                "factor": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 10.0, "step": 0.1}),
            }
        }

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "scale"
    CATEGORY = "text_tools"

    def scale(self, number, factor):
        return (number * factor,)


class Format:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "value": ("FLOAT", {"forceInput": True}),
                "template": ("STRING", {"default": "{:.2f}"}),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "format"
    CATEGORY = "text_tools"

    def format(self, value, template):
        return (template.format(value),)


class Show:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "text_tools"

    def show(self, text):
        return {"ui": {"text": [text]}, "result": (text,)}


class Split:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "a b"})}}

    RETURN_TYPES = ("STRING",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "split"
    CATEGORY = "text_tools"

    def split(self, text):
        return (text.split(),)


class Upper:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "upper"
    CATEGORY = "text_tools"

    async def upper(self, text):
        return (text.upper(),)


class Card:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"default": "hi"}),
                "width": ("INT", {"default": 64, "min": 1, "max": 1024}),
                "height": ("INT", {"default": 32, "min": 1, "max": 1024}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "draw"
    CATEGORY = "text_tools"

    def draw(self, text, width, height):
        if width < 8 or height < 8:
            raise ValueError(f"card too small: {width}x{height}")
        card = Image.new("RGB", (width, height), (20, 40, 200))
        ImageDraw.Draw(card).text((2, 2), text, fill=(255, 255, 255))
        return (Images([card]),)


NODE_CLASS_MAPPINGS = {
    "TextToolsRepeat": Repeat,
    "TextToolsScale": Scale,
    "TextToolsFormat": Format,
    "TextToolsShow": Show,
    "TextToolsSplit": Split,
    "TextToolsUpper": Upper,
    "TextToolsCard": Card,
}
NODE_DISPLAY_NAME_MAPPINGS = {"TextToolsRepeat": "Repeat Text", "TextToolsCard": "Text Card"}
