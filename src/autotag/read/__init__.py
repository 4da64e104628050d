"""Reading the decoded picture itself: colours, picture facts, photo or art. numpy + PIL only."""

from autotag.read.colors import COLOR_NAMES, PALETTE, Color, ColorSample, dominant_colors
from autotag.read.facts import Properties, picture_properties
from autotag.read.style import ART_STYLES, STYLE_NAMES, Style, StyleHead, keep_content_tags, picture_styles

__all__ = [
    "ART_STYLES", "COLOR_NAMES", "PALETTE", "STYLE_NAMES", "Color", "ColorSample", "Properties", "Style", "StyleHead",
    "dominant_colors", "keep_content_tags", "picture_properties", "picture_styles",
]  # fmt: skip
