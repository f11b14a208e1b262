import pytest

from psmlab.config import PRESETS, RunConfig, build_config, parse_overrides
from psmlab.errors import ConfigError


def test_presets_validate():
    for name in PRESETS:
        cfg = build_config(name)
        assert cfg.preset == name


def test_override_nested_and_typed():
    cfg = build_config(
        "smoke", overrides=["world.rho=0.25", "pretrain.max_steps=3", "fidelity.ks=[0, 2]"]
    )
    assert cfg.world.rho == 0.25 and cfg.pretrain.max_steps == 3 and cfg.fidelity.ks == [0, 2]


def test_partial_dict_override_merges_into_defaults():
    cfg = build_config("quick", overrides=["world.doc_mix.filler=0.5"])
    assert cfg.world.doc_mix["filler"] == 0.5
    assert cfg.world.doc_mix["anonymous"] == RunConfig().world.doc_mix["anonymous"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("world.rhoo=1", "unknown field 'world.rhoo'"),
        ("world.rho=2", "world.rho"),
        ("world.doc_mix.foo=1", "foo"),
        ("model.d_model=30", "divisible"),
        ("pretrain.block_size=4096", "block_size"),
        ("world.chat_fraction=1.0", "world.chat_fraction"),
        ("world.chat_fraction=-0.1", "world.chat_fraction"),
        ("world.doc_mix.chat=0.2", "world.chat_fraction"),
        ("world.doc_mix.described=-1", "doc_mix weights must be >= 0"),
        ("fidelity.described_per_trait=0", "fidelity.described_per_trait"),
        ("fidelity.skill_items=2", "fidelity.skill_items"),
        ("directions.n_requests=0", "directions.n_requests"),
    ],
)
def test_bad_fields_named(override, needle):
    with pytest.raises(ConfigError) as err:
        build_config("quick", overrides=[override])
    assert needle in str(err.value)


def test_unknown_field_lists_allowed():
    with pytest.raises(ConfigError) as err:
        build_config("quick", overrides=["world.rhoo=1"])
    assert "rho" in str(err.value).split("allowed here:")[1]


def test_bad_override_syntax_and_preset():
    with pytest.raises(ConfigError):
        parse_overrides(["world.rho"])
    with pytest.raises(ConfigError):
        build_config("nope")


def test_config_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("world:\n  rho: 0.1\n")
    t = tmp_path / "c.toml"
    t.write_text("[world]\nrho = 0.3\n")
    assert build_config("smoke", y).world.rho == 0.1
    assert build_config("smoke", t).world.rho == 0.3
    bad = tmp_path / "b.yaml"
    bad.write_text("world: [unclosed\n")
    with pytest.raises(ConfigError, match="does not parse"):
        build_config("smoke", bad)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config("smoke", tmp_path / "missing.yaml")
