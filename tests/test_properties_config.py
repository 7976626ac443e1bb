"""Property tests of config parsing: any TOML text, and any change to a valid config, gives
either a valid :class:`RunConfig` or a :class:`ConfigError` naming the file; never another
exception (a traceback instead of a message) and never a half-checked config."""

from __future__ import annotations

import copy

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.config import ConfigError, RunConfig, load_config, parse_config

VALID = {
    "name": "p", "seed": 0, "device": "cpu", "batch_size": 4,
    "dataset": {"name": "harbor", "split": "test", "n": 8},
    "models": [{"spec": "harbor:contextual"}],
    "methods": [{"name": "gradcam"}, {"name": "integrated_gradients", "steps": 8}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "leakage"}],
}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.booleans(), st.integers(-5, 300), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "test", "gradcam", "harbor", "cpu", "auto", "cuda:7", "pointing_game", "layer4"]),
    st.text(max_size=10),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
KNOWN_KEYS = ["name", "seed", "device", "batch_size", "num_workers", "output_dir", "save_maps",
              "split", "n", "size", "rho", "spec", "label", "steps", "layer", "relu", "tolerance",
              "baseline", "internal_batch_size", "dataset", "models", "model", "methods", "metrics"]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
where = st.sampled_from(["top", "dataset", "models", "methods", "metrics"])


@st.composite
def mutated(draw) -> dict:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        place, key = draw(where), draw(keys)
        table = data if place == "top" else data.get(place)
        if isinstance(table, list):
            table = table[draw(st.integers(0, len(table) - 1))] if table else None
        if not isinstance(table, dict):
            continue
        if draw(st.booleans()) or not table:
            table[key] = draw(toml_values)
        else:
            table.pop(draw(st.sampled_from(sorted(table))))
    return data


def _check(outcome) -> None:
    if isinstance(outcome, RunConfig):
        # A config that passes is fully resolved and round-trips through its own TOML form.
        again = parse_config(copy.deepcopy(outcome.to_dict()), source="again")
        assert again.to_dict() == outcome.to_dict()


@SETTINGS
@given(data=mutated())
def test_any_change_to_a_valid_config_is_accepted_or_a_config_error(data):
    try:
        outcome = parse_config(data, source="fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ")
        return
    _check(outcome)


@SETTINGS
@given(data=mutated())
def test_the_same_holds_through_a_toml_file(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_text(tomli_w.dumps(data))
    try:
        outcome = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
        return
    _check(outcome)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_file_content_is_a_config_error_or_a_config(tmp_path, blob):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(blob)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
