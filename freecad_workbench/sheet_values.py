"""How the Parameters spreadsheet writes a named dimension, without FreeCAD: its text and its unit."""

from __future__ import annotations

SHEET_DECIMALS = 6  # rounds away float noise (8.875999999999999) and keeps every digit a person wrote
NAME_COLUMN_PX = 180  # wide enough for "hole_spacing_x", "plate_half_thickness"


def sheet_number(value: float) -> str:
    """A parameter's cell text: rounded to SHEET_DECIMALS places, no trailing ".0" (80, 8.876)."""
    text = repr(round(float(value), SHEET_DECIMALS) + 0.0)  # + 0.0: never "-0.0"
    return text[:-2] if text.endswith(".0") else text


def sheet_content(value: float) -> str:
    """What to write in a parameter's cell. FreeCAD stores a number with 16 significant digits, so a
    value without an exact binary form comes back as noise (8.876 -> 8.875999999999999); such a value
    goes in as the exact fraction ("=8876 / 1000"), which FreeCAD keeps as written."""
    text = sheet_number(value)
    if f"{float(text):.16g}" == text or "." not in text:
        return text
    whole, decimals = text.lstrip("-").split(".")
    sign = "-" if text.startswith("-") else ""
    return f"={sign}{int(whole + decimals)} / {10 ** len(decimals)}"


def parameter_unit(name: str) -> str:
    """The unit of a parameter, for the sheet's Unit column: counts have none, angles are in degrees,
    every other named dimension is a length in millimetres."""
    words = name.split("_")
    if "count" in words:
        return ""
    if "angle" in words:
        return "°"
    return "mm"
