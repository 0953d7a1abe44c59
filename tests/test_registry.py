import pytest

from thinkcli.errors import ConfigError
from thinkcli.policy.registry import TIER_NAMES, load_registry


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
    ("tiers:\n  extreme:\n    max_thinking: 9\n", "tiers.extreme: unknown tier"),
    ("modles:\n  x: {}\n", "unknown key 'modles'"),
    ("families:\n  f:\n    think_open: '<t>'\n    think_close: '</t>'\n    prefill_open: true\n",
     "families.f: unknown field 'prefill_open'"),
    ("default_model: [a, b]\n", "default_model: must be a model name"),
    ("tiers:\n  light:\n    1: x\n    colour: red\n", "tiers.light: unknown field '1'"),
    ("tiers:\n  deep:\n    samples: 300\n", "tiers.deep.samples: must be <= 64"),
    ("tiers:\n  deep:\n    confidence_window: 100000000\n", "tiers.deep.confidence_window: must be <= 4096"),
    ("[" * 5000 + "]" * 5000 + "\n", "models.yaml"),
])
def test_bad_user_file_names_file_entry_and_field(tmp_path, text, expected):
    user = tmp_path / "models.yaml"
    user.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(user)
    assert expected in str(err.value)
    assert str(user) in str(err.value)


def test_a_models_yaml_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_bytes(b"models:\n  x\xff\xfe: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        load_registry(user)
    assert str(user) in str(err.value)


def alias_bomb(levels: int = 8) -> str:
    """A few hundred bytes of YAML whose value, expanded, has 9**levels items."""
    anchors = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        anchors.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "[" + ", ".join(anchors) + "]"


@pytest.mark.parametrize("key", ["threads", "n_ctx", "default_model", "log"])
def test_an_alias_bomb_in_config_yaml_is_refused_without_expanding_it(tmp_path, key):
    from thinkcli.config import Paths, Settings

    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "cache")
    paths.config_dir.mkdir()
    paths.settings_file.write_text(f"{key}: {alias_bomb()}\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(paths)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)
    assert f"{key}: must be a single value (got a list)" in str(err.value)


@pytest.mark.parametrize("env, config, expected", [
    ({"THINK_THREADS": "abc"}, None, "THINK_THREADS: must be a whole number from 0 to 1024 (got 'abc')"),
    ({"THINK_THREADS": "-3"}, None, "THINK_THREADS: must be a whole number"),
    ({"THINK_N_CTX": "-100"}, None, "THINK_N_CTX: must be a whole number from 256"),
    ({}, "n_ctx: -100\n", "config.yaml: n_ctx: must be a whole number from 256"),
    ({}, "threads: -3\n", "config.yaml: threads: must be a whole number from 0"),
    ({}, "colour: red\n", "config.yaml: colour: unknown setting"),
    ({"THINK_OFFLINE": "maybe"}, None, "THINK_OFFLINE: must be true or false"),
])
def test_settings_are_range_checked_and_named(tmp_path, monkeypatch, env, config, expected):
    from thinkcli.config import Paths, Settings

    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "cache")
    if config is not None:
        paths.config_dir.mkdir()
        paths.settings_file.write_text(config)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        Settings.load(paths)
    assert expected in str(err.value)


def test_settings_precedence_env_over_file_over_defaults(tmp_path, monkeypatch):
    from thinkcli.config import Paths, Settings

    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "cache")
    assert Settings.load(paths).n_ctx == 4096
    paths.config_dir.mkdir()
    paths.settings_file.write_text("n_ctx: 8192\nthreads: 2\ngpu_layers: all\n")
    loaded = Settings.load(paths)
    assert (loaded.n_ctx, loaded.threads, loaded.gpu_layers) == (8192, 2, -1)
    monkeypatch.setenv("THINK_N_CTX", "2048")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = Settings.load(paths)
    assert (loaded.n_ctx, loaded.threads, loaded.offline) == (2048, 2, True)
    monkeypatch.setenv("THINK_OFFLINE", "0")  # THINK_OFFLINE is more specific than HF_HUB_OFFLINE
    assert Settings.load(paths).offline is False
