"""The difficulty tiers, named once, and the one rule between them that the probe follows."""

from __future__ import annotations

TIER_NAMES = ("instant", "light", "standard", "deep")  # from no thinking to the most


def escalation_tier(tier: str) -> str:
    """Where an unsure probe goes: the tier itself, thinking; instant (which never thinks) goes to light."""
    return "light" if tier == "instant" else tier
