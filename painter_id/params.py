"""Typed, validated view of ``params.yaml``.

Every stage reads only its own section through :func:`load_section`, so a typo or a
value out of range stops the stage with a one-line :class:`PipelineError` that names the
param and says what to do, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from painter_id.errors import PipelineError

PARAMS_FILE = "params.yaml"
# A params file is a few kB; these bound what a hostile one (huge, or an alias bomb) can cost.
MAX_PARAMS_BYTES = 1 << 20
MAX_PARAMS_NODES = 10_000
# Integers must fit the 64-bit ints of NumPy, TensorFlow and MLflow.
MAX_INT = 2**63 - 1


def show(value: Any) -> str:
    """A short ``repr`` of a param value for an error message, whatever its size (never unbounded)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxtuple = 2, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    return short.repr(value)


def _check_choice(section: str, name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise PipelineError(
            f"params.yaml: {section}.{name} is {show(value)}; use one of {', '.join(map(str, choices))}"
        )


def _check_range(
    section: str,
    name: str,
    value: float,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must lie in {interval}")


# dvc.yaml makes data.path and data.url dependencies of download, so DVC itself sees paintings
# added, removed or replaced in that folder, or other bytes at that link; a dependency must
# exist (a null one breaks every dvc command), so for the other sources they name this file.
STAND_IN = "painter_id/synthetic.py"


@dataclass(frozen=True)
class DataParams:
    """``data``: where the paintings come from and which artists are kept."""

    source: str = "synthetic"
    url: Optional[str] = STAND_IN
    path: Optional[str] = STAND_IN
    kaggle_dataset: str = "ikarus777/best-artworks-of-all-time"
    seed: int = 42
    min_images: int = 1
    top_n: Optional[int] = None
    max_pixels: int = 40_000_000
    max_archive_bytes: int = 8_000_000_000
    timeout: float = 60.0
    synthetic_artists: int = 10
    synthetic_images: int = 400

    def validate(self) -> None:
        s = "data"
        _check_choice(s, "source", self.source, ["synthetic", "kaggle", "url", "path"])
        if self.source == "url":
            if not self.url or not str(self.url).startswith(("http://", "https://")):
                raise PipelineError(
                    "params.yaml: data.source is 'url' but data.url is not an http(s) link; "
                    "set data.url to the address of a .zip or .tar.gz"
                )
            reference = re.search(r"\$\{[^}]*\}", self.url)
            if reference:  # DVC checks the link itself (a dependency of download) and expands no variable
                raise PipelineError(
                    f"params.yaml: data.url holds {reference.group(0)}, which DVC cannot expand when it checks the "
                    "link; write the link without credentials and put them in ~/.netrc (or the file $NETRC "
                    "names): machine HOST login USER password PASSWORD"
                )
        if self.source == "path" and (not self.path or self.path == STAND_IN):
            raise PipelineError(
                f"params.yaml: data.source is 'path' but data.path is empty (or still {STAND_IN}, "
                "its default); set data.path to a folder or archive in the Kaggle layout"
            )
        _check_range(s, "min_images", self.min_images, 1)
        if self.top_n is not None:
            _check_range(s, "top_n", self.top_n, 2)
        _check_range(s, "max_pixels", self.max_pixels, 1)
        _check_range(s, "max_archive_bytes", self.max_archive_bytes, 1)
        _check_range(s, "timeout", self.timeout, 0, low_open=True)
        _check_range(s, "synthetic_artists", self.synthetic_artists, 2, 12)
        _check_range(s, "synthetic_images", self.synthetic_images, 10 * self.synthetic_artists)


@dataclass(frozen=True)
class SplitParams:
    """``split``: the stratified train/test split."""

    test_size: float = 0.2
    seed: int = 42

    def validate(self) -> None:
        # 0: every painting trains (the final model); train.cv_folds then scores the configuration.
        _check_range("split", "test_size", self.test_size, 0, 1, high_open=True)


@dataclass(frozen=True)
class OversampleParams:
    """``oversample``: augmented copies of minority artists, training split only."""

    strategy: str = "min_count"
    min_count: int = 80
    fraction: float = 0.5
    seed: int = 42
    rotation: float = 20.0
    shift: float = 0.1
    zoom: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = False

    def validate(self) -> None:
        s = "oversample"
        _check_choice(s, "strategy", self.strategy, ["min_count", "match_largest", "none"])
        _check_range(s, "min_count", self.min_count, 1)
        _check_range(s, "fraction", self.fraction, 0, 1, low_open=True)
        _check_range(s, "rotation", self.rotation, 0, 180)
        _check_range(s, "shift", self.shift, 0, 0.5, high_open=True)
        _check_range(s, "zoom", self.zoom, 0, 0.9)


@dataclass(frozen=True)
class ResizeParams:
    """``resize``: the square size every image is brought to before training."""

    image_size: int = 75
    mode: str = "pad"
    workers: int = 0

    def validate(self) -> None:
        _check_range("resize", "image_size", self.image_size, 16, 1024)
        _check_choice("resize", "mode", self.mode, ["pad", "crop", "stretch"])
        _check_range("resize", "workers", self.workers, 0)


@dataclass(frozen=True)
class ModelParams:
    """``model``: backbone, its weights, how much of it is frozen, and the head."""

    backbone: str = "simple_cnn"
    weights: Optional[str] = None
    frozen_layers: Union[int, str] = 0
    alpha: float = 1.0
    pooled_layers: tuple[str, ...] = ()
    dropout: float = 0.3
    l2: float = 0.0
    pooling: str = "avg"
    gram_layers: tuple[str, ...] = ()
    gram_dim: int = 64
    scales: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        s = "model"
        if isinstance(self.frozen_layers, str) and self.frozen_layers != "all":
            raise PipelineError(
                f"params.yaml: model.frozen_layers is {show(self.frozen_layers)}; "
                "use a number of layers (0 trains everything) or 'all'"
            )
        if isinstance(self.frozen_layers, int):
            _check_range(s, "frozen_layers", self.frozen_layers, 0)
        _check_range(s, "alpha", self.alpha, 0, 1.4, low_open=True)
        _check_range(s, "dropout", self.dropout, 0, 1, high_open=True)
        _check_range(s, "l2", self.l2, 0)
        for name in ("pooled_layers", "gram_layers"):
            names = getattr(self, name)
            if len(set(names)) != len(names):
                raise PipelineError(f"params.yaml: model.{name} {show(list(names))} names a layer twice; "
                                    "list each layer once")
        _check_choice(s, "pooling", self.pooling, ["avg", "mean_std"])
        # 256 channels give 32,896 Gram features: beyond that the head outgrows any painting set.
        _check_range(s, "gram_dim", self.gram_dim, 1, 256)
        if not self.scales or len(set(self.scales)) != len(self.scales):
            raise PipelineError(f"params.yaml: model.scales is {show(list(self.scales))}; list each scale once, "
                                "e.g. [1.0, 1.5] (1.0: the image as resized)")
        for scale in self.scales:  # 4x a 1024 px image is already 16x the backbone's work
            _check_range(s, "scales", scale, 0, 4, low_open=True)


@dataclass(frozen=True)
class TrainParams:
    """``train``: optimisation, augmentation layers and reproducibility."""

    optimizer: str = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 10
    class_weight: str = "balanced"
    validation_split: float = 0.15
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 1
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-6
    flip: bool = True
    rotation: float = 0.0
    zoom: float = 0.0
    contrast: float = 0.0
    seed: int = 42
    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "auto"
    feature_cache: str = "auto"
    head_solver: str = "auto"
    cv_folds: int = 0

    def validate(self) -> None:
        s = "train"
        _check_choice(s, "optimizer", self.optimizer, ["adam", "sgd", "rmsprop"])
        _check_range(s, "learning_rate", self.learning_rate, 0, low_open=True)
        _check_range(s, "momentum", self.momentum, 0, 1, high_open=True)
        _check_range(s, "batch_size", self.batch_size, 1)
        _check_range(s, "epochs", self.epochs, 1)
        _check_choice(s, "class_weight", self.class_weight, ["balanced", "none"])
        _check_range(s, "validation_split", self.validation_split, 0, 0.5, high_open=True)
        _check_range(s, "early_stopping_patience", self.early_stopping_patience, 1)
        _check_range(s, "reduce_lr_patience", self.reduce_lr_patience, 1)
        _check_range(s, "reduce_lr_factor", self.reduce_lr_factor, 0, 1, low_open=True, high_open=True)
        _check_range(s, "min_learning_rate", self.min_learning_rate, 0)
        _check_range(s, "rotation", self.rotation, 0, 1)
        _check_range(s, "zoom", self.zoom, 0, 0.9)
        _check_range(s, "contrast", self.contrast, 0, 1)
        _check_choice(s, "precision", self.precision, ["float32", "mixed_bfloat16", "mixed_float16"])
        _check_choice(s, "strategy", self.strategy, ["auto", "mirrored", "multi_worker"])
        _check_choice(s, "feature_cache", self.feature_cache, ["auto", "off"])
        _check_choice(s, "head_solver", self.head_solver, ["auto", "lbfgs", "minibatch"])
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise PipelineError(f"params.yaml: train.cv_folds is {self.cv_folds}; use 0 (no cross-validation) "
                                "or 2 or more folds")


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: scoring the test split."""

    batch_size: int = 64
    misclassified: int = 12
    tta: str = "none"
    feature_cache: str = "auto"

    def validate(self) -> None:
        _check_choice("evaluate", "feature_cache", self.feature_cache, ["auto", "off"])
        _check_range("evaluate", "batch_size", self.batch_size, 1)
        _check_range("evaluate", "misclassified", self.misclassified, 0, 100)
        _check_choice("evaluate", "tta", self.tta, ["none", "flip", "flip_crops"])


@dataclass(frozen=True)
class MlflowParams:
    """``mlflow``: where training runs are recorded."""

    tracking_uri: Optional[str] = None
    experiment: str = "painter-identification"
    log_model: bool = True

    def validate(self) -> None:
        if not self.experiment:
            raise PipelineError("params.yaml: mlflow.experiment is empty; give the MLflow experiment a name")


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "split": SplitParams,
    "oversample": OversampleParams,
    "resize": ResizeParams,
    "model": ModelParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "mlflow": MlflowParams,
}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "a list of numbers" if typing.get_args(tp)[0] is float else "a list of strings"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def _coerce(section: str, name: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a one-line error naming the param."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(section, name, value, option)
            except PipelineError:
                continue
        raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must be {_type_name(tp)}")
    if origin is tuple and typing.get_args(tp)[0] is float:  # a YAML list of numbers, e.g. model.scales
        if not isinstance(value, list):
            raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must be {_type_name(tp)}, "
                                "e.g. [1.0, 1.5]")
        return tuple(_coerce(section, name, item, float) for item in value)
    if origin is tuple:  # a YAML list of strings, e.g. model.pooled_layers
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must be {_type_name(tp)}, "
                                "e.g. [conv_pw_11_relu, conv_pw_12_relu]")
        return tuple(value)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must be {_type_name(tp)}")
    # NaN and infinity pass every range check (NaN compares false) and then break TensorFlow,
    # Keras or urllib; huge integers overflow their 64-bit ints.
    if isinstance(value, float) and not math.isfinite(value):
        raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise PipelineError(f"params.yaml: {section}.{name} is {show(value)}; it must lie in [-2^63, 2^63)")
    return float(value) if tp is float else value


def parse_section(section: str, raw: Optional[dict]) -> Any:
    """Build and validate the dataclass of ``section`` from its raw mapping."""
    cls = SECTIONS[section]
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise PipelineError(f"params.yaml: section '{section}' must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(str(key)[:100], known, n=1)
            hint = f"did you mean {section}.{close[0]}?" if close else f"valid keys: {', '.join(known)}"
            shown = str(key)[:60] if str(key).isprintable() else show(key)
            raise PipelineError(f"params.yaml: unknown key {section}.{shown}; {hint}")
        values[key] = _coerce(section, key, value, hints[key])
    params = cls(**values)
    params.validate()
    return params


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):
                if key in seen:
                    raise PipelineError(f"params.yaml: key {show(key)} appears twice "
                                        f"(line {key_node.start_mark.line + 1}); keep one")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_nodes(value: Any, budget: int) -> int:
    """``budget`` less the values in ``value`` counted with every alias expanded; below 0 means too many."""
    stack = [value]
    while stack and budget >= 0:
        item = stack.pop()
        budget -= 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return budget


def _parse_yaml(path: Path) -> Any:
    """The YAML value of ``path``, bounded in size and in aliases (a "billion laughs" bomb is refused)."""
    try:
        if path.stat().st_size > MAX_PARAMS_BYTES:
            raise PipelineError(f"{path}: larger than {MAX_PARAMS_BYTES} bytes; a params file is a few kB, check it")
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the stage from the project root, where params.yaml lives") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); "
                            "it must be a readable file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}; fix the syntax and run again") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested too deeply; fix the file") from None
    if _count_nodes(raw, MAX_PARAMS_NODES) < 0:
        raise PipelineError(f"{path}: holds more than {MAX_PARAMS_NODES} values once its aliases (*name) are "
                            "expanded; write the values out")
    return raw


def read_params_file(path: os.PathLike | str = PARAMS_FILE) -> dict:
    """Read ``params.yaml`` as a plain mapping, with one-line errors for a missing or broken file."""
    path = Path(path)
    raw = _parse_yaml(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: must be a mapping of sections ({', '.join(SECTIONS)}), not {type(raw).__name__}")
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(SECTIONS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid sections: {', '.join(SECTIONS)}"
        raise PipelineError(f"{path}: unknown section {show(unknown[0])}; {hint}")
    return raw


def load_section(section: str, path: os.PathLike | str = PARAMS_FILE) -> Any:
    """Load one validated section of ``params.yaml`` (e.g. ``load_section("split")``)."""
    return parse_section(section, read_params_file(path).get(section))


@dataclass(frozen=True)
class Params:
    """All sections together, for recording a run's full configuration."""

    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    oversample: OversampleParams = field(default_factory=OversampleParams)
    resize: ResizeParams = field(default_factory=ResizeParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)

    def flat(self) -> dict[str, Any]:
        """Flatten to ``{"model.backbone": ..., "train.epochs": ...}``, as MLflow params."""
        out = {}
        for section in SECTIONS:
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                # MLflow shows a list param as text: written as in params.yaml, not as "('a', 'b')".
                out[f"{section}.{key}"] = f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else value
        return out


def load_all(path: os.PathLike | str = PARAMS_FILE) -> Params:
    """Load and validate every section of ``params.yaml``."""
    raw = read_params_file(path)
    return Params(**{name: parse_section(name, raw.get(name)) for name in SECTIONS})
