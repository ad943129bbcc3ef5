"""fer_spec: the contract's JSON form round-trips and refuses what it does not know."""

import pytest

from fer_spec import InputSpec, ModelSpec
from fer_spec.geometry import region_sizes


def test_model_spec_json_round_trip():
    spec = ModelSpec("mrcar", InputSpec((98, 98), (100, 100), 3, region_sizes((98, 98))), ("a", "b"), {"variant": "full"}, True, "rafdb")
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.input_spec.regions == {"eyes": (44, 98), "mouth": (58, 98)}


def test_unknown_fields_and_bad_values_are_named():
    data = ModelSpec("baseline", InputSpec(), ("a", "b")).to_dict()
    with pytest.raises(ValueError, match=r"Unknown model spec field\(s\) \['colour'\]"):
        ModelSpec.from_dict(dict(data, colour=1))
    with pytest.raises(ValueError, match=r"Unknown input spec field\(s\) \['crop'\]"):
        InputSpec.from_dict(dict(data["input_spec"], crop=4))
    with pytest.raises(ValueError, match="normalization"):
        InputSpec(normalization="imagenet")
    with pytest.raises(ValueError, match="distinct"):
        ModelSpec("baseline", InputSpec(), ("a", "a"))
