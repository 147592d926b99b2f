"""What a partner archive's stream (:mod:`ingest.layouts.partner_stream`) reports besides the
patches it staged: the partners paired with no S2 patch of the release."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartnerCounts:
    """What the partner stream saw besides the staged patches."""

    staged: int = 0
    without_s2: int = 0
    """Partner patches no S2 patch of the release is paired with (counted, not fatal)."""
    examples: list[str] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        return {"staged": self.staged, "without_s2": self.without_s2,
                "examples": list(self.examples)}  # fmt: skip
