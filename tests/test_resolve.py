"""models.resolve: the one place a model reference gets its meaning (file, embedded, cached repo, server)."""

from __future__ import annotations

import pytest

from thinkcli.config import Paths
from thinkcli.errors import ModelError
from thinkcli.models.resolve import LocalModel, ServedModel, display_name, is_available, resolve
from thinkcli.policy.registry import load_registry


def registry_with(think_home, text: str = ""):
    paths = Paths.resolve()
    paths.models_file.parent.mkdir(parents=True, exist_ok=True)
    paths.models_file.write_text(text or "models: {}\n")
    return load_registry(paths.models_file), paths


def test_a_path_is_a_local_file_named_by_its_file_name(tiny, think_home):
    registry, paths = registry_with(think_home)
    found = resolve(str(tiny("tame")), registry, paths)
    assert isinstance(found, LocalModel) and found.path == tiny("tame") and found.family is None
    assert display_name(str(tiny("tame"))) == tiny("tame").name  # a client never sees the folder
    with pytest.raises(ModelError, match="model file not found"):
        resolve(str(think_home / "missing.gguf"), registry, paths)


def test_an_embedded_alias_is_the_packaged_file_with_its_family(think_home):
    registry, paths = registry_with(think_home)
    found = resolve("tiny-reasoner", registry, paths)
    assert isinstance(found, LocalModel) and found.path.name == "tiny-reasoner.gguf" and found.path.is_file()
    assert found.family is not None and found.family.name == "qwen3" and found.entry is not None


def test_unknown_names_and_repos_not_downloaded_say_what_to_do(think_home):
    registry, paths = registry_with(think_home)
    with pytest.raises(ModelError, match=r"unknown model 'nonsense'.*tiny-reasoner"):
        resolve("nonsense", registry, paths)
    with pytest.raises(ModelError, match=r"not downloaded: run `think pull org/repo`"):
        resolve("org/repo", registry, paths)
    assert not is_available("nonsense", registry, paths) and is_available("tiny-reasoner", registry, paths)


def test_a_served_alias_and_an_ad_hoc_url_are_servers_never_files(think_home):
    registry, paths = registry_with(think_home, "models:\n  far:\n    url: http://127.0.0.1:9/v1/\n"
                                                "    model: served-name\n    family: qwen3\n    timeout: 7\n")
    far = resolve("far", registry, paths)
    assert isinstance(far, ServedModel) and far.endpoint.urls == ("http://127.0.0.1:9/v1",)
    assert far.endpoint.model == "served-name" and far.endpoint.timeout == 7 and far.family is not None
    assert is_available("far", registry, paths)  # asked only when a request runs on it: no connection here
    adhoc = resolve("http://127.0.0.1:9/v1#m?x", registry, paths)
    assert isinstance(adhoc, ServedModel) and adhoc.endpoint.model == "m?x" and adhoc.family is None
    with pytest.raises(ModelError, match="only \\?timeout=SECONDS"):
        resolve("http://127.0.0.1:9/v1?retries=3", registry, paths)


def test_a_served_models_template_file_that_cannot_be_read_is_one_line(think_home):
    registry, paths = registry_with(think_home, "models:\n  far:\n    url: http://127.0.0.1:9/v1\n"
                                                f"    family: qwen3\n    model: m\n    template: {think_home / 'none.jinja'}\n")
    with pytest.raises(ModelError, match=r"models\.far\.template: cannot read"):
        resolve("far", registry, paths)
