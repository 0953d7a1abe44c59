"""Load and validate models.yaml: model families, model aliases and difficulty tiers.

The shipped file sits next to this package (force-included into the wheel); a user file in the
config dir is merged over it entry by entry. Validation happens here, once, so that a bad file
is reported as one line naming the file, the entry and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..engine.budget import LOOP_TOKENS
from ..engine.family import Family, Sampling
from ..errors import ConfigError
from ..text import Json
from .tiers import TIER_NAMES

STRATEGIES = ("single", "vote")
TOP_LEVEL_KEYS = ("default_model", "families", "models", "tiers", "probe")


@dataclass(frozen=True)
class ProbeSettings:
    """The escalation probe: answer with thinking off first; think only if that answer is unsure.

    Applies to `--tier auto` prompts the classifier puts in `tiers`; `tokens` answer tokens are
    judged by their geometric-mean token probability against `confidence`."""

    enabled: bool = True
    tokens: int = 12
    confidence: float = 0.8
    tiers: tuple[str, ...] = ("instant", "light")


@dataclass(frozen=True)
class Tier:
    name: str
    min_thinking: int = 0
    max_thinking: int = 0
    max_answer: int = 512
    strategy: str = "single"
    samples: int = 1
    confidence: float = 0.0
    confidence_window: int = 64
    confidence_floor: float = 0.0
    grace: int = 0  # close at a sentence end within the last `grace` tokens of the cap
    loop_tokens: int = LOOP_TOKENS  # thinking repeating one span this long ends (0: the loop breaker is off)
    # Trial answers (DEER-like): at each line end of the thinking, a fork answers a few tokens; an answer
    # this sure ends the thinking (0: off). Local models only.
    trial_confidence: float = 0.0
    trial_tokens: int = 8
    # Give up: past half the cap with no trial answer this sure, thinking ends as at the cap (0: off)
    give_up: float = 0.0
    # Two trial answers in a row that agree, each this sure, end thinking too (0: off)
    trial_agree: float = 0.0
    # A trial answer that the line of thinking just ended states word for word, this sure, ends thinking (0: off)
    trial_stated: float = 0.0
    # The probe's bar on this tier's prompts (0: the probe's own `confidence`): a prompt the classifier
    # calls instant can be trusted at a lower confidence than one it calls light or standard
    probe_confidence: float = 0.0
    model: str | None = None


SERVER_BUDGETS = ("auto", "llama-server", "vllm", "sglang", "off")


def _server_budget(c: _Checker) -> str:
    """`server_budget:` — YAML reads a bare `off`/`on` as a boolean: taken as meant."""
    value = c.raw.get("server_budget")
    if isinstance(value, bool):
        return "auto" if value else "off"
    return str(c.choice("server_budget", "auto", SERVER_BUDGETS))


@dataclass(frozen=True)
class ModelEntry:
    alias: str
    family: str
    repo: str | None = None
    file: str | None = None
    quant: str | None = None
    embedded: bool = False
    path: str | None = None
    description: str = ""
    size: int | None = None
    # Tier budgets for this model only (e.g. from `think eval --calibrate --write`): every tier, the
    # global ones with this model's fields over them. Empty: the global tiers.
    tiers: dict[str, Tier] = field(default_factory=dict, hash=False, compare=False)
    probe: ProbeSettings | None = None  # this model's own probe settings (else the global ones)
    # A model on an OpenAI-compatible server (llama-server, vLLM, SGLang): its base URL(s), its name
    # there, the variable holding its API key, and optionally a chat template file.
    url: str | None = None
    urls: tuple[str, ...] = ()
    model: str | None = None
    api_key_env: str | None = None
    template: str | None = None
    timeout: float | None = None  # seconds a server may stay silent (None: THINK_REMOTE_TIMEOUT, else 30)
    parallel: int = 0  # sequences in flight per replica at most (0: only --parallel limits)
    # Who keeps a capped item's thinking budget: the server (one request) where it can, detected
    # (auto), or named: llama-server, vllm, sglang; off: always this client (a second request).
    server_budget: str = "auto"

    @property
    def remote(self) -> bool:
        return bool(self.url or self.urls)


@dataclass(frozen=True)
class Registry:
    default_model: str
    families: dict[str, Family]
    models: dict[str, ModelEntry]
    tiers: dict[str, Tier]
    sources: tuple[Path, ...] = ()
    probe: ProbeSettings = ProbeSettings()

    def model(self, alias: str) -> ModelEntry:
        try:
            return self.models[alias]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ConfigError(f"unknown model '{alias}' (known: {known})") from None

    def family(self, name: str) -> Family:
        return self.families[name]

    def tiers_for(self, model: str | None) -> dict[str, Tier]:
        """The tiers in force on a model: its own budgets where models.yaml gives them."""
        entry = self.models.get(model) if model else None
        return entry.tiers if entry is not None and entry.tiers else self.tiers

    def probe_for(self, model: str | None, tier: str | None = None) -> ProbeSettings:
        """The probe on a model; with `tier`, its confidence is that tier's own bar where it has one."""
        entry = self.models.get(model) if model else None
        settings = entry.probe if entry is not None and entry.probe is not None else self.probe
        tiers = self.tiers_for(model)
        own = tiers[tier].probe_confidence if tier in tiers else 0.0
        return replace(settings, confidence=own) if own else settings

    def deep_budget(self, model: str | None) -> int:
        """Thinking tokens one prompt costs at the deep tier's fixed budget (every sample counted)."""
        deep = self.tiers_for(model)["deep"]
        return deep.max_thinking * (deep.samples if deep.strategy == "vote" else 1)


def shipped_path() -> Path:
    """The models.yaml inside the installed package (or the repo root in a checkout)."""
    package = Path(__file__).resolve().parents[1]
    inside = package / "models.yaml"
    return inside if inside.exists() else package.parent / "models.yaml"


def _read_yaml(path: Path) -> Json:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    unknown = [key for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key '{str(unknown[0])[:60]}' (known: {', '.join(TOP_LEVEL_KEYS)})")
    return data


def _merge(base: Json, over: Json) -> Json:
    merged = dict(base)
    for key, value in over.items():
        if key in ("families", "models", "tiers") and isinstance(value, dict):
            section = dict(merged.get(key) or {})
            for name, entry in value.items():
                old = section.get(name)
                if isinstance(old, dict) and isinstance(entry, dict):
                    section[name] = {**old, **entry}
                else:
                    section[name] = entry
            merged[key] = section
        elif key == "probe" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class _Checker:
    """Reads typed fields out of one entry, naming file/section/entry/field on failure."""

    def __init__(self, source: str, section: str, name: str, raw: Any, allowed: set[str]):
        self.where = f"{source}: {section}.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.where}: must be a mapping")
        unknown = set(raw) - allowed
        if unknown:
            raise ConfigError(f"{self.where}: unknown field '{sorted(str(k) for k in unknown)[0][:60]}'")
        self.raw = raw

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {why}")

    def text(self, key: str, default: str | None = None, required: bool = False) -> Any:
        value = self.raw.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int = 2**53) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be an integer")
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}")
        if value > maximum:
            raise self.fail(key, f"must be <= {maximum}")
        return value

    def number(self, key: str, default: float, lo: float = 0.0, hi: float = float("inf")) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, "must be a number")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in options:
            raise self.fail(key, f"must be one of {', '.join(options)}")
        return value


def _family(source: str, name: str, raw: Any) -> Family:
    c = _Checker(source, "families", name, raw, set(Family.__dataclass_fields__) - {"name"})
    sampling_raw = raw.get("sampling") or {}
    s = _Checker(source, f"families.{name}", "sampling", sampling_raw, set(Sampling.__dataclass_fields__))
    sampling = Sampling(
        temperature=s.number("temperature", 0.7, 0.0, 5.0),
        top_p=s.number("top_p", 0.95, 0.0, 1.0),
        top_k=s.integer("top_k", 40),
        min_p=s.number("min_p", 0.05, 0.0, 1.0),
        repeat_penalty=s.number("repeat_penalty", 1.0, 0.0, 5.0),
    )
    stop = raw.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop):
        raise c.fail("stop", "must be a list of non-empty strings")
    return Family(
        name=name,
        think_open=c.text("think_open", required=True),
        think_close=c.text("think_close", required=True),
        budget_message=c.text("budget_message", Family.budget_message),
        wait_word=c.text("wait_word", "Wait"),
        thinking_instruction=c.text("thinking_instruction", ""),
        plain_template=c.flag("plain_template", False),
        answer_prefix=c.text("answer_prefix", ""),
        stop=tuple(stop),
        sampling=sampling,
    )


def _model(source: str, alias: str, raw: Any, families: dict[str, Family],
           global_tiers: Json, global_probe: Any) -> ModelEntry:
    c = _Checker(source, "models", alias, raw, set(ModelEntry.__dataclass_fields__) - {"alias"})
    family = c.text("family", required=True)
    if family not in families:
        raise c.fail("family", f"unknown family '{family}' (known: {', '.join(sorted(families))})")
    entry = ModelEntry(
        alias=alias,
        family=family,
        repo=c.text("repo"),
        file=c.text("file"),
        quant=c.text("quant"),
        embedded=c.flag("embedded", False),
        path=c.text("path"),
        description=c.text("description", ""),
        size=c.integer("size", 0) or None,
        tiers=_model_tiers(source, alias, raw.get("tiers"), global_tiers),
        probe=_probe(f"{source}: models.{alias}", raw["probe"], global_probe) if "probe" in raw else None,
        url=c.text("url"),
        urls=tuple(_url_list(c, raw.get("urls"))),
        model=c.text("model"),
        api_key_env=c.text("api_key_env"),
        template=c.text("template"),
        timeout=c.number("timeout", 0.0, 0.1, 86400.0) if "timeout" in c.raw else None,
        parallel=c.integer("parallel", 0, maximum=1024),
        server_budget=_server_budget(c),
    )
    for url in ([entry.url] if entry.url else []) + list(entry.urls):
        if not url.startswith(("http://", "https://")):
            raise c.fail("url", f"must start with http:// or https:// (got {url})")
    if entry.remote and not entry.model:
        raise c.fail("model", "is required for a served model (its name on the server)")
    if not (entry.embedded or entry.repo or entry.path or entry.remote):
        raise c.fail("repo", "is required (or path, for a local file; or url, for a server)")
    if entry.repo and entry.repo.count("/") != 1:
        raise c.fail("repo", "must look like org/name")
    return entry


def _url_list(c: _Checker, raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(u, str) for u in raw):
        raise c.fail("urls", "must be a list of base URLs")
    return raw


def _model_tiers(source: str, alias: str, raw: Any, global_tiers: Json) -> dict[str, Tier]:
    """A model's own tier fields, each over the global tier of that name (routing stays global)."""
    if raw is None:
        return {}
    where = f"{source}: models.{alias}.tiers"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of tier names")
    for name, fields in raw.items():
        if name not in TIER_NAMES:
            raise ConfigError(f"{where}.{name}: unknown tier (the tiers are {', '.join(TIER_NAMES)})")
        if isinstance(fields, dict) and "model" in fields:
            raise ConfigError(f"{where}.{name}.model: a model's own tiers cannot route to another model")
    merged = {}
    for name in TIER_NAMES:
        base = global_tiers.get(name)
        over = raw.get(name) or {}
        if not isinstance(over, dict):
            raise ConfigError(f"{where}.{name}: must be a mapping")
        merged[name] = _tier(f"{source}: models.{alias}", name, {**(base if isinstance(base, dict) else {}), **over})
    return merged


def _probe(source: str, raw: Any, base: Any = None) -> ProbeSettings:
    """The `probe:` section (top level, or a model's own, over the top-level one)."""
    merged = {**(base if isinstance(base, dict) else {}), **(raw if isinstance(raw, dict) else {})}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: probe: must be a mapping")
    c = _Checker(source, "probe", "", merged, set(ProbeSettings.__dataclass_fields__))
    c.where = f"{source}: probe"
    tiers = merged.get("tiers", list(ProbeSettings.tiers))
    if not isinstance(tiers, list) or any(t not in TIER_NAMES for t in tiers):
        raise c.fail("tiers", f"must be a list of tier names ({', '.join(TIER_NAMES)})")
    return ProbeSettings(
        enabled=c.flag("enabled", True),
        tokens=c.integer("tokens", ProbeSettings.tokens, minimum=1, maximum=4096),
        confidence=c.number("confidence", ProbeSettings.confidence, 0.0, 1.0),
        tiers=tuple(tiers),
    )


def _tier(source: str, name: str, raw: Any) -> Tier:
    c = _Checker(source, "tiers", name, raw, set(Tier.__dataclass_fields__) - {"name"})
    tier = Tier(
        name=name,
        min_thinking=c.integer("min_thinking", 0, maximum=1 << 20),
        max_thinking=c.integer("max_thinking", 0, maximum=1 << 20),
        max_answer=c.integer("max_answer", 512, minimum=1, maximum=1 << 20),
        strategy=c.choice("strategy", "single", STRATEGIES),
        samples=c.integer("samples", 1, minimum=1, maximum=64),
        confidence=c.number("confidence", 0.0, 0.0, 1.0),
        confidence_window=c.integer("confidence_window", 64, minimum=1, maximum=4096),
        confidence_floor=c.number("confidence_floor", 0.0, 0.0, 1.0),
        grace=c.integer("grace", 0, maximum=1 << 20),
        loop_tokens=c.integer("loop_tokens", LOOP_TOKENS, maximum=1 << 20),
        trial_confidence=c.number("trial_confidence", 0.0, 0.0, 1.0),
        trial_tokens=c.integer("trial_tokens", 8, minimum=1, maximum=64),
        give_up=c.number("give_up", 0.0, 0.0, 1.0),
        trial_agree=c.number("trial_agree", 0.0, 0.0, 1.0),
        trial_stated=c.number("trial_stated", 0.0, 0.0, 1.0),
        probe_confidence=c.number("probe_confidence", 0.0, 0.0, 1.0),
        model=c.text("model"),
    )
    if tier.min_thinking > tier.max_thinking:
        raise c.fail("min_thinking", "must not exceed max_thinking")
    return tier


def load_registry(user_file: Path | None = None) -> Registry:
    """Shipped models.yaml merged with the user's file (if it exists), validated."""
    shipped = shipped_path()
    data = _read_yaml(shipped)
    sources = [shipped]
    source_of: dict[tuple[str, str], str] = {}
    for section in ("families", "models", "tiers"):
        for name in data.get(section) or {}:
            source_of[(section, name)] = str(shipped)
    if user_file is not None and user_file.exists():
        user = _read_yaml(user_file)
        for section in ("families", "models", "tiers"):
            value = user.get(section)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{user_file}: {section} must be a mapping")
            for name in value or {}:
                source_of[(section, name)] = str(user_file)
        data = _merge(data, user)
        sources.append(user_file)

    def src(section: str, name: str) -> str:
        return source_of.get((section, name), str(shipped))

    families = {n: _family(src("families", n), n, r) for n, r in (data.get("families") or {}).items()}
    raw_tiers = data.get("tiers") or {}
    raw_probe = data.get("probe")
    probe = _probe(str(sources[-1]), raw_probe) if raw_probe is not None else ProbeSettings()
    # the global tiers first: a bad one is named in its own file, not in a model that merges it
    tiers = {n: _tier(src("tiers", n), n, r) for n, r in (data.get("tiers") or {}).items()}
    models = {n: _model(src("models", n), n, r, families, raw_tiers, raw_probe)
              for n, r in (data.get("models") or {}).items()}
    strange = [t for t in tiers if t not in TIER_NAMES]
    if strange:
        raise ConfigError(f"{src('tiers', strange[0])}: tiers.{strange[0]}: unknown tier (the tiers are "
                          f"{', '.join(TIER_NAMES)})")
    missing = [t for t in TIER_NAMES if t not in tiers]
    if missing:
        raise ConfigError(f"{sources[-1]}: tiers.{missing[0]} is missing")
    for tier in tiers.values():
        if tier.model and tier.model not in models:
            raise ConfigError(f"{src('tiers', tier.name)}: tiers.{tier.name}.model: unknown model '{tier.model}'")
    default = data.get("default_model", "gemma3-270m")
    if not isinstance(default, str):
        raise ConfigError(f"{sources[-1]}: default_model: must be a model name (a string)")
    if default not in models:
        raise ConfigError(f"{sources[-1]}: default_model: unknown model '{default[:60]}'")
    return Registry(default, families, models, tiers, tuple(sources), probe)
