"""Signup parameters, their bounds, and the segment rule.

The parameter types below are used both in the flow signature (so Prefect puts
the bounds into the deployment's parameter schema and the server rejects bad
input before a run exists) and in :class:`Signup`, which the flow validates
first, before any side effect.

Segment rule
------------
The assessment rates each business system red, orange, yellow or green. The
contact's segment is the first rule that matches, top to bottom:

==========  ==============================================================
segment     rule
==========  ==============================================================
critical    2 or more red systems
at-risk     exactly 1 red system, or 2 or more orange systems
steady      no red, at most 1 orange, and yellow + orange >= green
thriving    everything else (no red, at most 1 orange, green outnumbers
            yellow + orange)
==========  ==============================================================

At least one system must be rated (the four counts may not all be 0).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
#: Notion's email property holds at most 200 characters ("Request limits"), fewer than
#: the 254 an address may have: a longer one could never be stored, so it is refused here
#: and, through the deployment's parameter schema, at the door.
MAX_EMAIL_LENGTH = 200

Email = Annotated[str, Field(min_length=3, max_length=MAX_EMAIL_LENGTH, pattern=EMAIL_PATTERN)]
FirstName = Annotated[str, Field(min_length=1, max_length=100)]
BusinessName = Annotated[str, Field(min_length=1, max_length=200)]
Score = Annotated[int, Field(ge=0, le=100)]
SystemCount = Annotated[int, Field(ge=0, le=50)]
OptionalScore = Annotated[int | None, Field(ge=0, le=100)]
OptionalSystemName = Annotated[str | None, Field(min_length=1, max_length=100)]
OptionalMoney = Annotated[float | None, Field(ge=0, le=1_000_000_000)]


class Segment(StrEnum):
    """Contact segments, in order of urgency."""

    CRITICAL = "critical"
    AT_RISK = "at-risk"
    STEADY = "steady"
    THRIVING = "thriving"

    @property
    def label(self) -> str:
        """Human label, used as the Notion select option."""
        return {
            Segment.CRITICAL: "Critical",
            Segment.AT_RISK: "At Risk",
            Segment.STEADY: "Steady",
            Segment.THRIVING: "Thriving",
        }[self]


def classify(red: int, orange: int, yellow: int, green: int) -> Segment:
    """Return the segment for the system counts (see the module docstring)."""
    if red >= 2:
        return Segment.CRITICAL
    if red == 1 or orange >= 2:
        return Segment.AT_RISK
    if yellow + orange >= green:
        return Segment.STEADY
    return Segment.THRIVING


class Signup(BaseModel):
    """A validated signup. The email is normalised to lower case."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    email: Email
    first_name: FirstName
    business_name: BusinessName
    assessment_score: Score
    red_systems: SystemCount
    orange_systems: SystemCount
    yellow_systems: SystemCount
    green_systems: SystemCount
    gps_score: OptionalScore = None
    money_score: OptionalScore = None
    weakest_system_1: OptionalSystemName = None
    weakest_system_2: OptionalSystemName = None
    revenue_leak_total: OptionalMoney = None

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _some_system_rated(self) -> Signup:
        total = self.red_systems + self.orange_systems + self.yellow_systems + self.green_systems
        if total == 0:
            raise ValueError(
                "red_systems, orange_systems, yellow_systems, green_systems: "
                "at least one system must be rated"
            )
        return self

    @property
    def segment(self) -> Segment:
        """The segment for this signup's system counts."""
        return classify(
            self.red_systems, self.orange_systems, self.yellow_systems, self.green_systems
        )
