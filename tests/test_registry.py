import pytest

from thinkcli.errors import ConfigError
from thinkcli.registry import TIER_NAMES, load_registry


def test_shipped_registry_validates():
    reg = load_registry(None)
    assert set(TIER_NAMES) <= set(reg.tiers)
    assert reg.default_model == "gemma3-270m" and reg.models["gemma3-270m"].embedded
    for family in ("qwen3", "deepseek-r1", "prompted", "plain", "gpt-oss", "smollm3"):
        assert family in reg.families
    assert reg.tiers["deep"].strategy == "vote"


def test_user_file_overrides_entry_by_entry(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("tiers:\n  light:\n    max_thinking: 99\nmodels:\n  mine:\n    path: /x.gguf\n    family: qwen3\n")
    reg = load_registry(user)
    assert reg.tiers["light"].max_thinking == 99
    assert reg.tiers["light"].max_answer == 256  # untouched fields kept
    assert reg.models["mine"].path == "/x.gguf"


@pytest.mark.parametrize("text, expected", [
    ("tiers:\n  light:\n    max_thinking: lots\n", "tiers.light.max_thinking: must be an integer"),
    ("tiers:\n  light:\n    max_thinking: -5\n", "tiers.light.max_thinking: must be >= 0"),
    ("models:\n  x:\n    family: nope\n    repo: a/b\n", "models.x.family: unknown family 'nope'"),
    ("models:\n  x:\n    family: qwen3\n", "models.x.repo: is required"),
    ("tiers:\n  deep:\n    strategy: magic\n", "tiers.deep.strategy: must be one of"),
    ("tiers: [1, 2\n", "is not valid YAML"),
    ("families:\n  f:\n    think_open: '<t>'\n", "families.f.think_close: is required"),
    ("tiers:\n  light:\n    colour: red\n", "tiers.light: unknown field 'colour'"),
])
def test_bad_user_file_names_file_entry_and_field(tmp_path, text, expected):
    user = tmp_path / "models.yaml"
    user.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(user)
    assert expected in str(err.value)
    assert str(user) in str(err.value)
