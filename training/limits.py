"""Physical limits of each feature: what a reading can take at all, written into the artifact.

The service refuses a reading outside them (a sensor fault or a typo, not an unusual reading),
knowing nothing of what the features are; the domain knowledge lives here, where models are made.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence

Limits = tuple[float, float]
OPEN: Limits = (-math.inf, math.inf)

# Absolute zero in the units a temperature column may come in.
_ABSOLUTE_ZERO = {"°C": -273.15, "C": -273.15, "": -273.15, "K": 0.0, "°F": -459.67, "F": -459.67}


def known_limits(feature: str, unit: str) -> Limits:
    """The limits of the features this product knows (temperature, vibration), else open."""
    if feature == "temperature" and unit in _ABSOLUTE_ZERO:
        return (_ABSOLUTE_ZERO[unit], math.inf)
    if feature == "vibration":
        # An amplitude (RMS velocity, displacement or acceleration) is never negative.
        return (0.0, math.inf)
    return OPEN


def parse_limit(text: str) -> tuple[str, Limits]:
    """`NAME=LO:HI` with either side empty for open (`pressure=0:`, `speed=:3000`)."""
    name, equals, bounds = text.partition("=")
    low_text, colon, high_text = bounds.partition(":")
    if not (name.strip() and equals and colon):
        raise argparse.ArgumentTypeError(
            f"expected NAME=LO:HI (either side may be empty), got {text!r}"
        )
    try:
        low = float(low_text) if low_text.strip() else -math.inf
        high = float(high_text) if high_text.strip() else math.inf
    except ValueError:
        raise argparse.ArgumentTypeError(f"limits must be numbers, got {text!r}") from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise argparse.ArgumentTypeError(f"expected LO <= HI, got {text!r}")
    return name.strip(), (low, high)


def feature_limits(
    features: Sequence[str], units: Sequence[str], given: Mapping[str, Limits]
) -> tuple[list[float], list[float]]:
    """Lower and upper limits per feature: ``given`` (from --limits) first, else the known ones.

    Raises ValueError for a name in ``given`` that is not a feature.
    """
    unknown = sorted(set(given) - set(features))
    if unknown:
        raise ValueError(
            f"--limits names {', '.join(map(repr, unknown))}, which is not a feature"
            f" (features: {', '.join(features)})"
        )
    chosen = [given.get(f) or known_limits(f, u) for f, u in zip(features, units, strict=True)]
    return [low for low, _ in chosen], [high for _, high in chosen]
