"""The segment rule and the parameter schema the deployment gets."""

from __future__ import annotations

import pytest
from christmas_signup.flow import christmas_signup_handler
from christmas_signup.inputs import Segment, Signup, classify
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from .conftest import signup_params


@pytest.mark.parametrize(
    ("red", "orange", "yellow", "green", "segment"),
    [
        (2, 0, 0, 0, Segment.CRITICAL),
        (5, 3, 1, 1, Segment.CRITICAL),
        (2, 0, 0, 10, Segment.CRITICAL),
        (1, 0, 0, 0, Segment.AT_RISK),
        (1, 0, 0, 10, Segment.AT_RISK),
        (0, 2, 0, 0, Segment.AT_RISK),
        (0, 2, 0, 10, Segment.AT_RISK),
        (0, 1, 0, 1, Segment.STEADY),
        (0, 0, 3, 3, Segment.STEADY),
        (0, 0, 1, 0, Segment.STEADY),
        (0, 1, 2, 3, Segment.STEADY),
        (0, 0, 0, 1, Segment.THRIVING),
        (0, 1, 1, 3, Segment.THRIVING),
        (0, 0, 2, 3, Segment.THRIVING),
    ],
)
def test_segment_rule(red, orange, yellow, green, segment):
    assert classify(red, orange, yellow, green) is segment


def test_signup_normalises_email_and_needs_a_rated_system():
    assert Signup(**signup_params(email="  Jane@Example.COM ")).email == "jane@example.com"
    with pytest.raises(ValidationError, match="at least one system"):
        Signup(**signup_params(red_systems=0, orange_systems=0, yellow_systems=0, green_systems=0))
    with pytest.raises(ValidationError, match="colour"):
        Signup(**signup_params(colour="red"))


def test_parameter_schema_carries_types_and_bounds():
    schema = parameter_schema(christmas_signup_handler).model_dump()
    props = schema["properties"]
    assert set(schema["required"]) == {
        "email",
        "first_name",
        "business_name",
        "assessment_score",
        "red_systems",
        "orange_systems",
        "yellow_systems",
        "green_systems",
    }
    assert props["email"]["type"] == "string"
    assert props["email"]["maxLength"] == 200
    assert "pattern" in props["email"]
    assert (props["first_name"]["minLength"], props["first_name"]["maxLength"]) == (1, 100)
    assert props["assessment_score"] == {
        **props["assessment_score"],
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
    }
    for count in ("red_systems", "orange_systems", "yellow_systems", "green_systems"):
        assert (props[count]["type"], props[count]["minimum"]) == ("integer", 0)
    gps = {option.get("type"): option for option in props["gps_score"]["anyOf"]}
    assert gps["integer"]["maximum"] == 100
    assert "null" in gps
    leak = {option.get("type"): option for option in props["revenue_leak_total"]["anyOf"]}
    assert leak["number"]["minimum"] == 0
    assert props["dry_run"] == {**props["dry_run"], "type": "boolean", "default": False}
