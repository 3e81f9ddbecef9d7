"""Training configuration: defaults (the compact CPU preset), YAML files, `--set` overrides,
every value checked (SCHEMA: types, ranges, choices; unknown keys with a did-you-mean) before any
work starts."""

from __future__ import annotations

import copy
import difflib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# The compact CPU preset: MiT-B0 from scratch, small crops, a few minutes on 2 cores.
DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "mit_b0",
        "modalities": "both",  # both | image | event
        "hfca": True,
        "jbcd": True,
        "proj_dim": 64,
        "decoder_dim": None,  # None: SegFormer's (256 for B0/B1, 768 for B2-B5)
        "drop_path_rate": 0.1,
        "num_classes": 19,
        "pretrained_rgb": None,  # local mit_b*.pth or nvidia/mit-b* folder
        "pretrained_event": None,
    },
    "data": {
        "representation": "frame",  # frame (3 channels) | voxel
        "bins": 5,
        "crop": None,  # [height, width] at the working resolution; null = whole pairs
        # working resolution: pairs shrunk so their shorter side is this many pixels (never
        # enlarged); null = the RPEA grid's own (the demo's 647x360 grid at 96: 173x96)
        "short_side": 96,
        "hflip": True,
        "num_workers": 0,
        # HFCA instance masks: graph | sam (computed from the enhanced image, as a user without
        # ground truth gets them) | precomputed (`cacd masks DIR` stored them) | oracle (the
        # simulator's ground-truth instances the builder stored: not available on real data)
        "masks": "graph",
        "sam_checkpoint": None,
        "sam_model_type": "vit_h",
        "enhance": "clahe",  # clahe | none | package.module:function
    },
    "loss": {
        "cluster": 0.0005,
        "align": 0.01,
        "boundary": 0.001,
        "content": 0.001,
        "tau": 0.1,
        "alpha": 0.1,  # HSV V below: under-exposed
        "beta": 0.9,  # HSV V above: over-exposed
        "max_instances": 16,  # eqs. 4-5 sum over instances: the cap sets HFCA's weight
        # JBCD (eqs. 6-7): event_to_image = the paper's "distil from event to image", the event
        # side is the teacher and detached; mutual = both sides pulled together
        "distill_direction": "event_to_image",
    },
    "train": {
        "epochs": 40,
        "batch_size": 4,  # more steps in a minutes budget: better than 8 on the demo (docs/cacd.md)
        "optimizer": "adam",
        "lr": 0.001,
        "weight_decay": 0.0,
        "lr_schedule": "poly",  # poly | constant
        "warmup_steps": 20,  # linear warm-up from 0 over this many steps
        "max_minutes": 4.0,  # wall-clock budget; null = none
        "max_steps": None,  # caps the schedule length
        "stop_after_steps": None,  # stop early but resumably (schedule unchanged)
        "amp": "auto",  # auto (bf16 on CUDA) | bf16 | off
        "seed": 0,
        "val_every": 5,  # epochs
        "save_every_steps": 200,
        "log_every": 10,
        "threads": None,  # torch intra-op threads on CPU (null = torch default)
    },
    "eval": {"batch_size": 4},
}


class ConfigError(ValueError):
    """A config value of the wrong type or out of range, or an unknown key; the message names
    where it came from (the YAML file or the --set item) and what is expected."""


@dataclass(frozen=True)
class _Spec:
    """What one config leaf takes."""

    kind: str  # bool | int | float | str | choice | crop
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself is not allowed
    choices: tuple[str, ...] = ()
    optional: bool = False  # null allowed

    def expected(self) -> str:
        if self.kind == "choice":
            text = " | ".join(self.choices)
        elif self.kind == "crop":
            text = "[height, width] (two whole numbers >= 1)"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        else:
            text = "a whole number" if self.kind == "int" else "a number"
            if self.min is not None:
                text += f" {'>' if self.min_open else '>='} {self.min:g}"
            if self.max is not None:
                text += f" and <= {self.max:g}"
        return text + (" or null" if self.optional else "")


_POS_INT = _Spec("int", min=1)
_POS_FLOAT = _Spec("float", min=0, min_open=True)
_NONNEG_FLOAT = _Spec("float", min=0)
_PATH = _Spec("str", optional=True)
_UNIT = _Spec("float", min=0, max=1)
#: What each key of DEFAULTS takes (a key missing here takes any value; test_config checks none is).
SCHEMA: dict[str, _Spec] = {
    "model.backbone": _Spec("choice", choices=tuple(f"mit_b{i}" for i in range(6))),
    "model.modalities": _Spec("choice", choices=("both", "image", "event")),
    "model.hfca": _Spec("bool"),
    "model.jbcd": _Spec("bool"),
    "model.proj_dim": _POS_INT,
    "model.decoder_dim": _Spec("int", min=1, optional=True),
    "model.drop_path_rate": _Spec("float", min=0, max=1),
    "model.num_classes": _Spec("int", min=1, max=255),
    "model.pretrained_rgb": _PATH,
    "model.pretrained_event": _PATH,
    "data.representation": _Spec("choice", choices=("frame", "voxel")),
    "data.bins": _POS_INT,
    "data.crop": _Spec("crop", optional=True),
    "data.short_side": _Spec("int", min=8, optional=True),
    "data.hflip": _Spec("bool"),
    "data.num_workers": _Spec("int", min=0),
    "data.masks": _Spec("choice", choices=("graph", "sam", "precomputed", "oracle")),
    "data.sam_checkpoint": _PATH,
    "data.sam_model_type": _Spec("choice", choices=("vit_h", "vit_l", "vit_b")),
    "data.enhance": _Spec("str"),
    "loss.cluster": _NONNEG_FLOAT,
    "loss.align": _NONNEG_FLOAT,
    "loss.boundary": _NONNEG_FLOAT,
    "loss.content": _NONNEG_FLOAT,
    "loss.tau": _POS_FLOAT,
    "loss.alpha": _UNIT,
    "loss.beta": _UNIT,
    "loss.max_instances": _POS_INT,
    "loss.distill_direction": _Spec("choice", choices=("event_to_image", "mutual")),
    "train.epochs": _POS_INT,
    "train.batch_size": _POS_INT,
    "train.optimizer": _Spec("choice", choices=("adam", "adamw")),
    "train.lr": _POS_FLOAT,
    "train.weight_decay": _NONNEG_FLOAT,
    "train.warmup_steps": _Spec("int", min=0),
    "train.lr_schedule": _Spec("choice", choices=("poly", "constant")),
    "train.max_minutes": _Spec("float", min=0, min_open=True, optional=True),
    "train.max_steps": _Spec("int", min=1, optional=True),
    "train.stop_after_steps": _Spec("int", min=1, optional=True),
    "train.amp": _Spec("choice", choices=("auto", "bf16", "off")),
    "train.seed": _Spec("int"),
    "train.val_every": _POS_INT,
    "train.save_every_steps": _POS_INT,
    "train.log_every": _POS_INT,
    "train.threads": _Spec("int", min=1, optional=True),
    "eval.batch_size": _POS_INT,
}


#: Old values still read (run folders and configs written before they were renamed), each
#: mapped to its new value with a warning that says why.
DEPRECATED_VALUES: dict[str, dict[str, tuple[str, str]]] = {
    "data.masks": {
        "auto": ("graph", "it took the dataset's stored masks where there were any, which in "
                 "a built or synthetic dataset are the simulator's ground-truth (oracle) masks; "
                 "it now means graph (computed from the image); say oracle to train on them"),
        "masks": ("oracle", "the masks the builder stores are ground truth; masks computed by "
                  "`cacd masks DIR` are data.masks=precomputed"),
    },
}


class ConfigDeprecationWarning(UserWarning):
    """A config value that was renamed; it is read as its new name."""


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def _did_you_mean(key: str) -> str:
    """' (did you mean 'train.epochs'?)' for a mistyped key, '' when nothing is close."""
    names = _leaves(DEFAULTS) + list(DEFAULTS)
    leaf = key.rpartition(".")[2]
    # the right name in the wrong section (train.crop -> data.crop), else the closest spelling
    close = [n for n in names if n.rpartition(".")[2] == leaf and n != key][:1] \
        or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(key: str, value: Any) -> Any:
    """`value` for config leaf `key`, checked against SCHEMA (numbers given as strings, e.g. an
    unquoted 1e-4 that YAML reads as text, are converted); ConfigError without the source."""
    spec = SCHEMA.get(key)
    if spec is None:
        return value
    old = DEPRECATED_VALUES.get(key, {})
    if isinstance(value, str) and value in old:
        new, why = old[value]
        warnings.warn(f"{key}={value} is deprecated and read as {key}={new}: {why}",
                      ConfigDeprecationWarning, stacklevel=2)
        return new
    bad = ConfigError(f"{key}: expected {spec.expected()}, got {value!r}")
    if value is None:
        if spec.optional:
            return None
        raise bad
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind in ("str", "choice"):
        if not isinstance(value, str) or not value.strip():
            raise bad
        if spec.choices and value not in spec.choices:
            close = difflib.get_close_matches(value, spec.choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}: {value!r} is not one of {' | '.join(spec.choices)}{hint}")
        return value
    if spec.kind == "crop":
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise bad
        return [int(v) for v in value]
    if isinstance(value, bool):
        raise bad
    number: int | float
    try:
        if spec.kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            number = value if isinstance(value, int) else int(str(value).strip())
        else:
            number = float(value) if not isinstance(value, str) else float(value.strip())
    except (TypeError, ValueError):
        raise bad from None
    if isinstance(number, float) and not math.isfinite(number):
        raise bad
    if spec.min is not None and (number < spec.min or (spec.min_open and number == spec.min)):
        raise bad
    if spec.max is not None and number > spec.max:
        raise bad
    return number


def deep_update(base: dict, other: dict, path: str = "", source: str = "config") -> dict:
    """Merge `other` into a copy of `base`, each value checked (`check_value`); an unknown key,
    a section given a value or a wrong value raises ConfigError naming `source`."""
    if not isinstance(other, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(DEFAULTS)}), got "
                          f"{type(other).__name__}")
    out = copy.deepcopy(base)
    for k, v in other.items():
        where = f"{path}{k}"
        if k not in out:
            raise ConfigError(f"{source}: unknown config key {where!r}{_did_you_mean(where)}")
        if isinstance(out[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {where} is a section: give its keys "
                                  f"({', '.join(out[k])}), e.g. {where}.{next(iter(out[k]))}=...")
            out[k] = deep_update(out[k], v, where + ".", source)
        else:
            try:
                out[k] = check_value(where, v)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
    return out


def check_config(cfg: dict, source: str = "config") -> dict:
    """The whole config checked: every value (`check_value`) and what ties values together."""
    cfg = deep_update(DEFAULTS, cfg, source=source)
    if cfg["loss"]["alpha"] >= cfg["loss"]["beta"]:
        raise ConfigError(f"{source}: loss.alpha ({cfg['loss']['alpha']}) must be below loss.beta "
                          f"({cfg['loss']['beta']})")
    if cfg["data"]["masks"] == "sam" and not cfg["data"]["sam_checkpoint"]:
        raise ConfigError(f"{source}: data.masks=sam needs data.sam_checkpoint=PATH (a local file)")
    return cfg


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """`["train.lr=1e-4", "data.crop=[64,64]"]` -> nested dict (values parsed as YAML), each item
    checked on its own so that an error names it."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=10")
        key, value = item.split("=", 1)
        key = key.strip()
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        parts = key.split(".")
        if not key or not all(parts):
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=10")
        single: dict = {}
        node = single
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = parsed
        deep_update(DEFAULTS, single, source=f"--set {item}")
        out = _merge_raw(out, single)
    return out


def training_configs() -> list[str]:
    """The names `--config` finds in configs/ (rig.yaml examples left out)."""
    return sorted(f.stem for f in CONFIG_DIR.glob("*.yaml") if not f.stem.startswith("rig"))


def load_file(path: str | Path) -> dict:
    """Read a YAML config (a bare name is looked up in configs/), following `base:`."""
    p = Path(path)
    if not p.is_file() and (CONFIG_DIR / p).is_file():
        p = CONFIG_DIR / p
    if not p.is_file() and (CONFIG_DIR / f"{p}.yaml").is_file():
        p = CONFIG_DIR / f"{p}.yaml"
    if not p.is_file():
        where = "a folder, not a config file" if p.is_dir() else "config file not found"
        raise ConfigError(f"{path}: {where}; give a YAML file or a name in {CONFIG_DIR} "
                          f"({', '.join(training_configs())})")
    try:
        data = yaml.safe_load(p.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a YAML config (binary data); give a YAML file such as "
                          f"{CONFIG_DIR / 'compact.yaml'}") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: invalid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections ({', '.join(DEFAULTS)}), got "
                          f"{type(data).__name__}")
    base = data.pop("base", None)
    deep_update(DEFAULTS, data, source=str(p))  # checked here, so the error names this file
    if base:
        data = _merge_raw(load_file(p.parent / base if (p.parent / base).is_file() else base),
                          data)
    return data


def _merge_raw(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge_raw(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def resolve(config_file: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS <- config file <- --set overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    source = "config"
    if config_file:
        cfg = deep_update(cfg, load_file(config_file), source=str(config_file))
        source = str(config_file)
    if sets:
        cfg = deep_update(cfg, parse_set(sets), source="--set")
        source += " and --set"
    return check_config(cfg, source)
