"""Reading the decoded picture itself: colours, picture facts, photo or art. numpy + PIL only."""

from autotag.read.colors import COLOR_NAMES, PALETTE, Color, dominant_colors
from autotag.read.facts import Properties, picture_properties

__all__ = ["COLOR_NAMES", "PALETTE", "Color", "Properties", "dominant_colors", "picture_properties"]
