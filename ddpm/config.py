"""Typed experiment config: YAML file -> dataclasses, with dotted command-line overrides.

One resolved config (``ExperimentConfig``) goes into every run folder, every checkpoint and every
W&B run (nanoGPT style). Defaults here are the seed notebook's ``DMConfig`` exactly; presets under
``experiments/`` override a few values and say why.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ddpm.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "mnist"              # registry name in ddpm.data (mnist, fashion-mnist)
    root: Optional[str] = None          # folder with the four IDX .gz files; None = the dataset's default
    limit: Optional[int] = None         # train on the first N training images (quick runs)
    test_limit: Optional[int] = None    # evaluate the test noise loss on the first N test images
    val_size: int = 5000                # validation split: the training file's last N images (<= 5000, never
                                        # seen by the eval classifier); selects best.pt, prunes, scores sweeps.
                                        # 0 = none: selection falls back to the test split (as before)
    val_limit: Optional[int] = None     # evaluate the per-epoch val noise loss on the first N validation images
    mean: float = 0.1307                # seed: transforms.Normalize((0.1307,), (0.3081,))
    std: float = 0.3081


@dataclass
class ModelConfig:
    image_size: int = 28                # seed: input_dim = (28, 28)
    in_channels: int = 1                # seed: num_channels = 1
    num_classes: int = 10
    num_feat: int = 64                  # width of the ResUNet (GroupNorm(8, .) needs a multiple of 8)
    blocks_per_level: int = 1           # capacity knob: ResConvBlocks per down level (seed: 1); up levels get +1
    freeze_embeddings: bool = False     # the seed skeleton froze its embedding MLPs; off by default


@dataclass
class DiffusionConfig:
    T: int = 400
    schedule: str = "linear"            # registry name in ddpm.schedules
    beta_1: float = 1e-4
    beta_T: float = 2e-2
    mask_p: float = 0.1                 # condition dropout probability (p_uncond)
    condition_mask_value: float = -1.0  # the null condition: a one-hot made all -1
    prediction: str = "eps"             # network target, registry in ddpm.objectives: eps (seed) | v | x0
    zero_terminal_snr: bool = False     # rescale the schedule to alpha_bar_T = 0 (Lin et al. 2024); needs v


@dataclass
class TrainConfig:
    batch_size: int = 256
    epochs: int = 10
    lr: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [20])
    gamma: float = 0.1
    ema_decay: Optional[float] = None   # e.g. 0.999; None = no EMA
    path: str = "fast"                  # "fast" (resident data, batched guidance, ...) or "faithful" (the seed's)
    device: str = "auto"                # auto | cpu | cuda
    precision: str = "auto"             # auto | fp32 | bf16 (bf16 autocast; auto = bf16 on CUDA only)
    channels_last: bool = True          # fast path only
    compile: bool = False               # torch.compile the denoiser (fast path only)
    fold_batchnorm: bool = True         # sample from a copy with BatchNorm folded into the convs (fast path only)
    sample_chunk: Optional[int] = None  # images per network pass when sampling (fast path; None = 64 on a CPU,
                                        # where smaller passes stay in cache, and the whole batch on a GPU)
    grad_clip: Optional[float] = None
    loss_weighting: str = "uniform"     # registry in ddpm.objectives: uniform (seed) | min_snr (Hang et al. 2023)
    min_snr_gamma: float = 5.0          # gamma of min_snr: weight min(SNR, gamma) on the x0-MSE
    grid_every: int = 1                 # save a 10x10 sample grid every N epochs (0 = never)
    seed: int = 0


@dataclass
class SampleConfig:
    omega: float = 2.0                  # guidance weight w: eps~ = (1+w) eps(x,c,t) - w eps(x,t)
    sampler: str = "ddpm"               # registry name in ddpm.samplers
    steps: Optional[int] = None         # None = T (the ddpm sampler with steps < T respaces)
    eta: float = 0.0                    # DDIM stochasticity (0 = deterministic)
    clip_x0: bool = False               # clip the predicted x0 to the data range each step (off = Algorithm 2
                                        # exactly; schedules with betas near 1, e.g. cosine, need it on)


@dataclass
class TrackingConfig:
    wandb: str = "auto"                 # auto (online with credentials, else offline) | online | offline | disabled
    # None = not set: env WANDB_PROJECT / WANDB_ENTITY / WANDB_DIR, else our default (ddpm.tracking.wandb_env)
    project: Optional[str] = None       # W&B project; default ddpm-sweeps
    entity: Optional[str] = None        # W&B entity (team or user); default: the account's own
    dir: Optional[str] = None           # folder W&B writes its wandb/ folder into; default: the run folder
    log_model: bool = False             # upload the best checkpoint (best.pt) as a W&B model artifact per run


@dataclass
class ExperimentConfig:
    name: str = "seed"                  # run folder: <out_dir>/<name>/
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to one short line (a list or mapping in the wrong place can be long)."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: not a finite number; use a finite value")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats, integral floats for ints
    (``1e6``); NaN and infinities are refused everywhere."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {_show(value)}")
        return {k: _coerce(v, typing.get_args(tp)[1], f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {_show(value)}: expected {_type_name(tp)}")
        return [_coerce(v, typing.get_args(tp)[0], where) for v in value]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {_show(value)}: expected a number")
        _finite(value, where)
        return float(value)
    if tp is int:
        _finite(value, where)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} = {_show(value)}: expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {_show(value)}: expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {_show(value)}: expected a string")
        return value
    raise TypeError(f"unsupported annotation {tp}")  # pragma: no cover - programming error


def _unknown_key(source: str, prefix: str, key: str, names: list[str]) -> ConfigError:
    """An experiment config's unknown key, named by its dotted path (``model.a``)."""
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (allowed: {', '.join(names)})"
    return ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")


def _unknown_in_section(source: str, prefix: str, key: str, names: list[str]) -> ConfigError:
    """A sweep file's unknown key, named within its section (``s.yaml: guidance: unknown key 'x'``)."""
    where = f"{source}: {prefix.rstrip('.')}" if prefix else source
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(names)})"
    return ConfigError(f"{where}: unknown key '{key}'{hint}")


def _optional_of(tp: Any) -> Any:
    """``X`` for ``Optional[X]``, else None."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _from_dict(cls: type, data: Any, prefix: str, source: str, unknown: Callable[..., ConfigError] = _unknown_key) -> Any:
    """A mapping -> the dataclass ``cls``, checking every value against its annotation (``_coerce``); nested
    dataclasses recurse (a null section is the defaults, or None when annotated ``Optional``); a key without
    a default must be given. ``unknown(source, prefix, key, names)`` words an unknown key (sweep files name
    the section rather than the dotted path)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{source}: {prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {_show(key)} under {prefix.rstrip('.') or 'the top level'} is not a "
                              f"name; keys are strings like {names[0]}")
        if key not in names:
            raise unknown(source, prefix, key, names)
        tp = hints[key]
        section = tp if dataclasses.is_dataclass(tp) else _optional_of(tp)
        if dataclasses.is_dataclass(section):
            if value is None and section is not tp:
                kwargs[key] = None
            else:
                kwargs[key] = _from_dict(section, value if value is not None else {}, f"{prefix}{key}.", source, unknown)
        else:
            kwargs[key] = _coerce(value, tp, where)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} needs '{missing[0]}'")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], source: str = "<config>", check_endpoint: bool = True) -> ExperimentConfig:
    cfg = _from_dict(ExperimentConfig, data or {}, "", source)
    validate(cfg, source, check_endpoint)
    return cfg


def _parse_override(text: str, source: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"{source}: override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.load(raw, Loader=YAMLLoader) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_dotted(data: dict[str, Any], dotted: str | list[str], value: Any) -> None:
    parts = dotted.split(".") if isinstance(dotted, str) else dotted
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(parts)}: '{p}' is not a section")
    node[parts[-1]] = value


def get_dotted(cfg: ExperimentConfig | dict, dotted: str) -> Any:
    node: Any = cfg
    for p in dotted.split("."):
        node = node[p] if isinstance(node, dict) else getattr(node, p)
    return node


# PyYAML resolves YAML 1.1, where `3e-4` and `1e6` are strings (1.1 floats need a dot). Configs, dotted
# overrides and sweep files are read with YAML 1.2's float rule instead (YAML 1.2 spec, 10.3.2 "Core
# Schema"): an exponent alone makes a float. Ints, booleans and nulls keep PyYAML's rules.
_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?
                          |[-+]?[0-9]+[eE][-+]?[0-9]+
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class YAMLLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 floats (``3e-4`` is 0.0003, ``1e6`` is 1000000.0)."""


YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
YAMLLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (YAML 1.2 floats); every way it can be wrong is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                          f"save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=YAMLLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {_show(data)}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                extra: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load YAML (``base:`` chains to another file), apply ``extra`` dotted keys, then CLI overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = _read_with_base(Path(path))
    for k, v in (extra or {}).items():
        set_dotted(data, k, v)
    for o in overrides or []:
        parts, value = _parse_override(o, source)
        set_dotted(data, parts, value)
    return config_from_dict(data, source)


def experiment_dict(path: str | Path) -> dict[str, Any]:
    """An experiment file resolved to every key (``base:`` chain, then the defaults), typed but not yet
    validated: what a sweep stores with its study and applies its overrides to."""
    return _from_dict(ExperimentConfig, _read_with_base(Path(path)), "", str(path)).to_dict()


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base = {_show(base)}: must name another experiment file, e.g. seed.yaml")
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: base = {base!r}: no such config file ({base_path})")
    if base_path in seen:
        raise ConfigError(f"{path}: base '{base}' makes a cycle")
    merged = _read_with_base(base_path, seen + (path.resolve(),))
    _deep_merge(merged, data)
    return merged


def _deep_merge(into: dict, other: dict) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    from ddpm.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------
# semantic validation


def _choice(where: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} = {value!r}: unknown name; valid: {', '.join(allowed)}")


def validate(cfg: ExperimentConfig, source: str = "<config>", check_endpoint: bool = True) -> None:
    """Reject a config no run should start from, in one line naming the key. ``check_endpoint=False``
    skips only the terminal alpha_bar_T guard: for reading back what was already trained (checkpoints)."""
    from ddpm.data import DATASETS
    from ddpm.objectives import LOSS_WEIGHTINGS, PREDICTIONS
    from ddpm.samplers import SAMPLERS, check_steps  # the sampler registry; imports no model
    from ddpm.schedules import SCHEDULES

    d, m, t, s = cfg.diffusion, cfg.model, cfg.train, cfg.sample

    def bad(key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {value!r}: {why}")

    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise bad("name", cfg.name, "must be a non-empty folder name without '/'")
    _choice(f"{source}: data.dataset", cfg.data.dataset, sorted(DATASETS))
    for key in ("limit", "test_limit", "val_limit"):
        v = getattr(cfg.data, key)
        if v is not None and v < 1:
            raise bad(f"data.{key}", v, "must be >= 1 or null")
    from ddpm.data import HELD_OUT

    if not 0 <= cfg.data.val_size <= HELD_OUT:
        raise bad("data.val_size", cfg.data.val_size,
                  f"must lie in 0..{HELD_OUT}: validation images are the training file's last val_size images, and "
                  f"the evaluation classifier is trained on all but the last {HELD_OUT}")
    if cfg.data.std <= 0:
        raise bad("data.std", cfg.data.std, "must be > 0")
    if d.T < 1:
        raise bad("diffusion.T", d.T, "must be >= 1")
    _choice(f"{source}: diffusion.schedule", d.schedule, sorted(SCHEDULES))
    for key in ("beta_1", "beta_T"):
        v = getattr(d, key)
        if not 0.0 < v < 1.0:
            raise bad(f"diffusion.{key}", v, "must lie in (0, 1)")
    if d.beta_1 > d.beta_T:
        raise bad("diffusion.beta_1", d.beta_1, f"must be <= diffusion.beta_T ({d.beta_T})")
    _choice(f"{source}: diffusion.prediction", d.prediction, sorted(PREDICTIONS))
    if d.zero_terminal_snr and not PREDICTIONS[d.prediction].finite_at_zero_snr:
        raise ConfigError(f"{source}: diffusion.zero_terminal_snr = true needs diffusion.prediction = 'v' (got "
                          f"{d.prediction!r}): at alpha_bar_T = 0 an {d.prediction} output says nothing about x0 "
                          f"(Lin et al. 2024)")
    if not 0.0 <= d.mask_p < 1.0:
        raise bad("diffusion.mask_p", d.mask_p, "must lie in [0, 1)")
    if m.num_feat < 8 or m.num_feat % 8:
        raise bad("model.num_feat", m.num_feat, "must be a positive multiple of 8 (the net's GroupNorm has 8 groups)")
    if m.blocks_per_level < 1:
        raise bad("model.blocks_per_level", m.blocks_per_level, "must be >= 1")
    if m.image_size % 4:
        raise bad("model.image_size", m.image_size, "must be divisible by 4 (two 2x down-samplings)")
    if m.in_channels < 1 or m.num_classes < 1:
        raise bad("model.in_channels", m.in_channels, "channels and classes must be >= 1")
    if t.batch_size < 1:
        raise bad("train.batch_size", t.batch_size, "must be >= 1")
    if t.epochs < 1:
        raise bad("train.epochs", t.epochs, "must be >= 1")
    if t.lr <= 0:
        raise bad("train.lr", t.lr, "must be > 0")
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        raise bad("train.ema_decay", t.ema_decay, "must lie in (0, 1) or be null")
    _choice(f"{source}: train.path", t.path, ["fast", "faithful"])
    _choice(f"{source}: train.device", t.device, ["auto", "cpu", "cuda"])
    _choice(f"{source}: train.precision", t.precision, ["auto", "fp32", "bf16"])
    _choice(f"{source}: train.loss_weighting", t.loss_weighting, sorted(LOSS_WEIGHTINGS))
    if t.min_snr_gamma <= 0:
        raise bad("train.min_snr_gamma", t.min_snr_gamma, "must be > 0")
    if t.grid_every < 0:
        raise bad("train.grid_every", t.grid_every, "must be >= 0")
    if not 0 <= t.seed < 2**63:
        raise bad("train.seed", t.seed, "must lie in 0..2**63-1")
    if t.sample_chunk is not None and t.sample_chunk < 1:
        raise bad("train.sample_chunk", t.sample_chunk, "must be >= 1 or null (64 on a CPU, whole batch on a GPU)")
    _choice(f"{source}: sample.sampler", s.sampler, sorted(SAMPLERS))
    check_steps(s.steps, d.T, f"{source}: sample.steps")
    if s.eta < 0:
        raise bad("sample.eta", s.eta, "must be >= 0")
    _choice(f"{source}: tracking.wandb", cfg.tracking.wandb, ["auto", "online", "offline", "disabled"])
    if check_endpoint and not d.zero_terminal_snr:   # rescaled: alpha_bar_T = 0, the guard holds trivially
        _check_terminal_alpha_bar(d, source)


def _check_terminal_alpha_bar(d: DiffusionConfig, source: str) -> None:
    """alpha_bar_T <= MAX_TERMINAL_ALPHA_BAR (the bound and its reasons: ddpm/schedules.py)."""
    from ddpm.schedules import MAX_TERMINAL_ALPHA_BAR, SCHEDULE_PARAMS, smallest_beta_T, terminal_alpha_bar

    abar = terminal_alpha_bar(d.schedule, d.T, d.beta_1, d.beta_T)
    if abar <= MAX_TERMINAL_ALPHA_BAR:
        return
    used = ("T",) + SCHEDULE_PARAMS[d.schedule]
    values = ", ".join(f"diffusion.{k} = {getattr(d, k)!r}" for k in ("schedule",) + used)
    least = smallest_beta_T(d.schedule, d.T, d.beta_1)
    fix = (f"raise diffusion.beta_T to >= {least:.3g} or raise diffusion.T" if least is not None
           else "raise diffusion.T")
    raise ConfigError(f"{source}: {values}: alpha_bar_T = {abar:.3g} exceeds {MAX_TERMINAL_ALPHA_BAR:g} (x_T would "
                      f"keep that share of the image while sampling starts from pure noise); {fix}")


# ----------------------------------------------------------------------------------------------
# the seed default

# Keys that say where or how a run executes, not what it computes: a config that differs from the seed's
# DMConfig only in these still ran the seed default. Everything else (data, model, diffusion, the
# training recipe, sampling) must equal ``ExperimentConfig()``'s value.
RUNTIME_KEYS = ("name", "out_dir", "tracking", "data.root", "train.device", "train.precision", "train.path",
                "train.channels_last", "train.compile", "train.fold_batchnorm", "train.sample_chunk",
                "train.grid_every")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def seed_differences(cfg: ExperimentConfig | dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys where ``cfg`` differs from the seed's DMConfig (``ExperimentConfig()``), ``RUNTIME_KEYS``
    and ``ignore`` (keys or sections) aside; a key ``cfg`` lacks counts as different. [] = the seed default."""
    have = _flat(cfg.to_dict() if isinstance(cfg, ExperimentConfig) else cfg)
    skip = RUNTIME_KEYS + tuple(ignore)
    out = []
    for key, value in _flat(ExperimentConfig().to_dict()).items():
        if any(key == s or key.startswith(s + ".") for s in skip):
            continue
        if key not in have or have[key] != value or isinstance(have[key], bool) != isinstance(value, bool):
            out.append(key)
    return out
