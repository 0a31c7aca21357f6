"""Every param of ``params.yaml``, declared once: its type, default, allowed values and meaning.

Each section is a frozen dataclass whose fields are declared with :func:`param`: the
default, a one-line description (the params reference in ``docs/params.md`` and the comments
of ``params.yaml`` are generated from them), and the allowed choices or range, which
:func:`parse_section` checks. A stage reads only its own section through
:func:`load_section`, so a typo or a value out of range stops it with a one-line
:class:`PipelineError` naming the param and saying what to do, before any work starts.

The sections DVC tracks (``data`` ... ``evaluate``) hold what can change a result. Where
runs are recorded (``mlflow``) and how fast they run (``runtime``) are read by the stages
but are no DVC dependency: changing them reruns nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from painter_id.core.errors import PipelineError, show
from painter_id.core.paths import PARAMS_FILE, UNUSED_FILE
from painter_id.core.yaml_file import read_yaml

# Integers must fit the 64-bit ints of NumPy, TensorFlow and MLflow.
MAX_INT = 2**63 - 1

# The option lists: each defined here once, checked here, and imported by the code that acts on them.
SOURCES = ("synthetic", "kaggle", "url", "path")
OVERSAMPLE_STRATEGIES = ("min_count", "match_largest", "none")
RESIZE_MODES = ("pad", "crop", "stretch")
POOLINGS = ("avg", "mean_std")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
CLASS_WEIGHTS = ("balanced", "none")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "mirrored", "multi_worker")
WEIGHTS = ("random", "imagenet", "file")
TTA_MODES = ("none", "flip", "flip_crops")
BATCH_NORMS = ("frozen", "trainable")

# Params that were renamed: an old name is a one-line error naming the new one.
RENAMED = {
    "oversample.rotation": "oversample.rotation_degrees",
    "oversample.zoom": "oversample.zoom_fraction",
    "oversample.shift": "oversample.shift_fraction",
    "train.rotation": "train.rotation_turns",
    "train.zoom": "train.zoom_fraction",
    "resize.workers": "runtime.workers",
    "evaluate.batch_size": "runtime.predict_batch_size",
}
# Params that went away: a one-line error says why, instead of "unknown key".
REMOVED = {
    "train.feature_cache": "the features stage computes a frozen backbone's features, and DVC caches them",
    "evaluate.feature_cache": "the features stage computes a frozen backbone's features, and DVC caches them",
    "train.head_solver": "a head on frozen features is always solved exactly (L-BFGS); a backbone that trains, by epochs",
}


def param(default: Any, help: str, *, choices: Sequence[Any] = (), low: Optional[float] = None,
          high: Optional[float] = None, low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field of a params section: its default, meaning, and allowed choices or range."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices), "low": low, "high": high,
                                            "low_open": low_open, "high_open": high_open})


def interval(meta: dict) -> Optional[str]:
    """The range a param's metadata allows, written as an interval (``[0, 1)``), or ``None``."""
    low, high = meta["low"], meta["high"]
    if low is None and high is None:
        return None
    left = "(" if meta["low_open"] or low is None else "["
    right = ")" if meta["high_open"] or high is None else "]"
    return f"{left}{'-inf' if low is None else _number(low)}, {'inf' if high is None else _number(high)}{right}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_range(name: str, value: float, meta: dict) -> None:
    low, high = meta["low"], meta["high"]
    too_low = low is not None and (value <= low if meta["low_open"] else value < low)
    too_high = high is not None and (value >= high if meta["high_open"] else value > high)
    if too_low or too_high:
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must lie in {interval(meta)}")


def check_declared(section: str, params: Any) -> None:
    """Check every field of ``params`` against the choices or range it was declared with."""
    for spec in dataclasses.fields(params):
        value, meta = getattr(params, spec.name), spec.metadata
        name = f"{section}.{spec.name}"
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if item is None or isinstance(item, bool):
                continue
            if meta["choices"] and not isinstance(item, (int, float)):
                if item not in meta["choices"]:
                    raise PipelineError(f"params.yaml: {name} is {show(item)}; use one of "
                                        f"{', '.join(map(str, meta['choices']))} ({meta['help']})")
            elif isinstance(item, (int, float)):
                _check_range(name, item, meta)


def _names_once(name: str, names: tuple[str, ...]) -> None:
    if len(set(names)) != len(names):
        raise PipelineError(f"params.yaml: {name} {show(list(names))} names a layer twice; list each layer once")


@dataclass(frozen=True)
class DataParams:
    """``data``: where the paintings come from and which artists are kept."""

    source: str = param("synthetic", "where the paintings come from", choices=SOURCES)
    url: Optional[str] = param(str(UNUSED_FILE), "source url: http(s) link to a .zip or .tar.gz in the Kaggle "
                               "layout; a login goes in ~/.netrc, never in the link")
    path: Optional[str] = param(str(UNUSED_FILE), "source path: a local folder, .zip or .tar.gz in the Kaggle "
                                "layout")
    kaggle_dataset: str = param("ikarus777/best-artworks-of-all-time", "source kaggle: the dataset's handle")
    seed: int = param(42, "source synthetic: same seed, same paintings")
    min_images: int = param(1, "drop artists with fewer images than this", low=1)
    top_n: Optional[int] = param(None, "keep only the N artists with the most images (null: all)", low=2)
    max_pixels: int = param(40_000_000, "larger images are rejected as decompression bombs", low=1)
    max_archive_bytes: int = param(8_000_000_000, "refuse archives that unpack to more than this", low=1)
    timeout: float = param(60.0, "seconds without data before a download is abandoned", low=0, low_open=True)
    synthetic_artists: int = param(10, "source synthetic: number of invented painters", low=2, high=12)
    synthetic_images: int = param(400, "source synthetic: paintings in all, imbalanced across painters "
                                  "(at least 10 per painter)", low=20)

    def describe(self) -> str:
        """Where the paintings come from, in words that are safe to record (no login)."""
        from painter_id.core.urls import redact_url

        if self.source == "synthetic":
            return (f"synthetic set: {self.synthetic_artists} painters, {self.synthetic_images} paintings, "
                    f"seed {self.seed}")
        if self.source == "kaggle":
            return f"kaggle: {self.kaggle_dataset}"
        return f"url: {redact_url(self.url)}" if self.source == "url" else f"path: {self.path}"

    def check(self) -> None:
        """Checks across fields, after each field's own."""
        if self.source == "url":
            if not self.url or not str(self.url).startswith(("http://", "https://")):
                raise PipelineError("params.yaml: data.source is 'url' but data.url is not an http(s) link; "
                                    "set data.url to the address of a .zip or .tar.gz")
            reference = re.search(r"\$\{[^}]*\}", self.url)
            if reference:  # DVC checks the link itself (a dependency of download) and expands no variable
                raise PipelineError(
                    f"params.yaml: data.url holds {reference.group(0)}, which DVC cannot expand when it checks the "
                    "link; write the link without credentials and put them in ~/.netrc (or the file $NETRC "
                    "names): machine HOST login USER password PASSWORD")
        if self.source == "path" and (not self.path or self.path == str(UNUSED_FILE)):
            raise PipelineError(f"params.yaml: data.source is 'path' but data.path is empty (or still "
                                f"{UNUSED_FILE}, its placeholder); set data.path to a folder or archive in the "
                                "Kaggle layout")
        if self.synthetic_images < 10 * self.synthetic_artists:
            raise PipelineError(f"params.yaml: data.synthetic_images is {self.synthetic_images}; it must be at least "
                                f"10 per painter ({10 * self.synthetic_artists} for data.synthetic_artists "
                                f"{self.synthetic_artists})")


@dataclass(frozen=True)
class SplitParams:
    """``split``: the stratified train/test split."""

    test_size: float = param(0.2, "share of each artist's paintings held out for testing; 0: every painting "
                             "trains and train.cv_folds scores the model", low=0, high=1, high_open=True)
    seed: int = param(42, "seed of the split")


@dataclass(frozen=True)
class OversampleParams:
    """``oversample``: augmented copies of minority artists, training split only."""

    strategy: str = param("min_count", "how many copies each artist gets", choices=OVERSAMPLE_STRATEGIES)
    min_count: int = param(80, "strategy min_count: every artist gets at least this many images", low=1)
    fraction: float = param(0.5, "strategy match_largest: every artist gets at least this share of the largest",
                            low=0, high=1, low_open=True)
    seed: int = param(42, "seed of the copies")
    rotation_degrees: float = param(20.0, "a copy is turned by a random angle in [-this, this] degrees",
                                    low=0, high=180)
    shift_fraction: float = param(0.1, "a copy is moved by up to this share of its width and height",
                                  low=0, high=0.5, high_open=True)
    zoom_fraction: float = param(0.1, "a copy is scaled by a random factor in [1 - this, 1 + this]", low=0, high=0.9)
    horizontal_flip: bool = param(True, "a copy is mirrored left-right with probability 1/2")
    vertical_flip: bool = param(False, "a copy is turned upside down with probability 1/2")


@dataclass(frozen=True)
class ResizeParams:
    """``resize``: the square size every image is brought to before training."""

    # Not `size`: DVC 3.67 leaves a param of that name out of its run-cache key (dvc#10296).
    image_size: int = param(64, "side of the square images in pixels", low=16, high=1024)
    mode: str = param("pad", "how a painting becomes a square: pad (letterbox), crop (its centre) or stretch",
                      choices=RESIZE_MODES)


@dataclass(frozen=True)
class ModelParams:
    """``model``: backbone, its weights, how much of it is frozen, and the head."""

    backbone: str = param("NASNetMobile", "a keras.applications network without its top (NASNetMobile: 769 "
                          "layers, InceptionResNetV2: 780, MobileNet...) or simple_cnn, a small CNN")
    weights: str = param("random", "the backbone's starting weights: random, imagenet (Keras downloads them) or "
                         "file (model.weights_file)", choices=WEIGHTS)
    weights_file: str = param(str(UNUSED_FILE), "weights file: a .h5 of the backbone's weights (no top), relative "
                              "to the project root; a dependency of features and train")
    frozen_layers: Union[int, str] = param(0, "freeze the first N backbone layers; 0 trains all, 'all' freezes "
                                           "the whole backbone", low=0)
    alpha: float = param(1.0, "width multiplier of the MobileNet backbones", low=0, high=1.4, low_open=True)
    pooled_layers: tuple[str, ...] = param((), "backbone layers whose outputs are also pooled into the head")
    dropout: float = param(0.3, "dropout rate before the classifier", low=0, high=1, high_open=True)
    l2: float = param(0.0, "L2 penalty on the classifier's weights; 0 turns it off", low=0)
    pooling: str = param("avg", "how feature maps are pooled: avg, their channel means; mean_std, means and standard "
                         "deviations", choices=POOLINGS)
    gram_layers: tuple[str, ...] = param((), "backbone layers whose Gram matrix (style statistics) joins the head")
    # 256 channels give 32,896 Gram features: beyond that the head outgrows any painting set.
    gram_dim: int = param(64, "gram_layers: channels randomly projected to this many first", low=1, high=256)
    # 4x a 1024 px image is already 16x the backbone's work.
    scales: tuple[float, ...] = param((1.0,), "the painting is seen at these multiples of resize.image_size",
                                      low=0, high=4, low_open=True)
    # Frozen by default, as in Keras' fine-tuning guide: a few hundred paintings in batches of 32
    # give batch statistics far noisier than ImageNet's moving ones.
    batch_norm: str = param("frozen", "batch normalisation in the layers that train: frozen keeps them in inference "
                            "mode with their loaded statistics and scale (pretrained weights only: random ones "
                            "always train theirs); trainable updates both",
                            choices=BATCH_NORMS)

    def check(self) -> None:
        """Checks across fields, after each field's own."""
        if self.weights == "file" and self.weights_file == str(UNUSED_FILE):
            raise PipelineError(f"params.yaml: model.weights is 'file' but model.weights_file is still {UNUSED_FILE}, "
                                "its placeholder; set model.weights_file to the backbone's .h5 weights")
        if isinstance(self.frozen_layers, str) and self.frozen_layers != "all":
            raise PipelineError(f"params.yaml: model.frozen_layers is {show(self.frozen_layers)}; "
                                "use a number of layers (0 trains everything) or 'all'")
        _names_once("model.pooled_layers", self.pooled_layers)
        _names_once("model.gram_layers", self.gram_layers)
        if not self.scales or len(set(self.scales)) != len(self.scales):
            raise PipelineError(f"params.yaml: model.scales is {show(list(self.scales))}; list each scale once, "
                                "e.g. [1.0, 1.5] (1.0: the image as resized)")


@dataclass(frozen=True)
class TrainParams:
    """``train``: optimisation, augmentation layers and reproducibility."""

    optimizer: str = param("adam", "the optimizer (sgd uses train.momentum)", choices=OPTIMIZERS)
    learning_rate: float = param(0.001, "the optimizer's initial learning rate", low=0, low_open=True)
    momentum: float = param(0.9, "optimizer sgd: its momentum", low=0, high=1, high_open=True)
    batch_size: int = param(32, "images per training step", low=1)
    epochs: int = param(10, "at most; early stopping may end sooner", low=1)
    class_weight: str = param("balanced", "balanced: rare artists count as much as common ones", choices=CLASS_WEIGHTS)
    validation_split: float = param(0.15, "share of the training originals held out for validation; 0: stop on "
                                    "the training loss", low=0, high=0.5, high_open=True)
    early_stopping_patience: int = param(3, "epochs without improvement before training stops", low=1)
    reduce_lr_patience: int = param(1, "epochs without improvement before the learning rate drops", low=1)
    reduce_lr_factor: float = param(0.5, "the learning rate is multiplied by this when it drops",
                                    low=0, high=1, low_open=True, high_open=True)
    min_learning_rate: float = param(1e-6, "the learning rate never drops below this", low=0)
    flip: bool = param(True, "random horizontal flips while training")
    rotation_turns: float = param(0.0, "random rotation while training, up to this share of a full turn; 0: off",
                                  low=0, high=1)
    zoom_fraction: float = param(0.0, "random zoom while training, up to this share in or out; 0: off",
                                 low=0, high=0.9)
    contrast: float = param(0.0, "random contrast while training, a factor in [1 - this, 1 + this]; 0: off",
                            low=0, high=1)
    crop_fraction: float = param(0.0, "random crop while training: a square up to this share smaller, anywhere in "
                                 "the painting, scaled back to full size; 0: off", low=0, high=0.5, high_open=True)
    backbone_learning_rate_scale: float = param(0.1, "pretrained backbone layers that train learn at "
                                                "train.learning_rate times this, the head at train.learning_rate "
                                                "(random ones at it too)", low=0, high=1,
                                                low_open=True)
    head_first: bool = param(True, "training from the pixels with pretrained weights: first solve the head on the "
                             "frozen backbone's features (L-BFGS), then train from there")
    seed: int = param(42, "seed of weights, shuffling and augmentation")
    precision: str = param("float32", "the numbers training computes with; mixed precision speeds up GPUs", choices=PRECISIONS)
    jit_compile: bool = param(False, "XLA-compile the training step")
    strategy: str = param("auto", "auto: every local GPU when there are several; mirrored: every local GPU; multi_worker: "
                          "several machines, as TF_CONFIG describes them",
                          choices=STRATEGIES)
    cv_folds: int = param(0, "k >= 2: first train and score k stratified folds of the training paintings; 0: off")

    def check(self) -> None:
        """Checks across fields, after each field's own."""
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise PipelineError(f"params.yaml: train.cv_folds is {self.cv_folds}; use 0 (no cross-validation) "
                                "or 2 or more folds")


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: scoring the test split."""

    misclassified: int = param(12, "wrong predictions shown in metrics/misclassified.png", low=0, high=100)
    tta: str = param("none", "test-time augmentation: flip averages the mirror image in, flip_crops also a 90% centre "
                     "zoom of both", choices=TTA_MODES)


@dataclass(frozen=True)
class RuntimeParams:
    """``runtime``: how fast the stages run; never changes a result, so no DVC dependency."""

    workers: int = param(0, "processes that decode and resize images; 0: one per core", low=0)
    predict_batch_size: int = param(16, "images per prediction step in features and evaluate", low=1)
    download_seconds: float = param(3600.0, "the longest one download may take, however slowly the server sends; "
                                    "data.timeout bounds each wait for data", low=0, low_open=True)
    graph_optimizer: bool = param(False, "TensorFlow's graph optimizer (Grappler): on may speed up steps on a GPU; "
                                  "off starts training sooner and ran as fast on CPUs")


@dataclass(frozen=True)
class MlflowParams:
    """``mlflow``: where training runs are recorded; never changes a result, so no DVC dependency."""

    tracking_uri: Optional[str] = param(None, "null: sqlite:///<main workspace>/mlflow.db; MLFLOW_TRACKING_URI "
                                        "overrides")
    experiment: str = param("painter-identification", "the MLflow experiment runs are recorded in")
    log_model: bool = param(True, "also log the trained model as an MLflow Model")

    def check(self) -> None:
        """Checks across fields, after each field's own."""
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
    "runtime": RuntimeParams,
    "mlflow": MlflowParams,
}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "a list of numbers" if typing.get_args(tp)[0] is float else "a list of strings"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def _coerce_list(name: str, value: Any, tp: Any) -> tuple:
    if typing.get_args(tp)[0] is float:  # a YAML list of numbers, e.g. model.scales
        if not isinstance(value, list):
            raise PipelineError(f"params.yaml: {name} is {show(value)}; it must be {_type_name(tp)}, e.g. [1.0, 1.5]")
        return tuple(_coerce(name, item, float) for item in value)
    if value is None:  # a YAML list of strings, e.g. model.pooled_layers
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must be {_type_name(tp)}, "
                            "e.g. [conv_pw_11_relu, conv_pw_12_relu]")
    return tuple(value)


def _coerce(name: str, value: Any, tp: Any) -> Any:
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
                return _coerce(name, value, option)
            except PipelineError:
                continue
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must be {_type_name(tp)}")
    if origin is tuple:
        return _coerce_list(name, value, tp)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must be {_type_name(tp)}")
    # NaN and infinity pass every range check (NaN compares false) and then break TensorFlow,
    # Keras or urllib; huge integers overflow their 64-bit ints.
    if isinstance(value, float) and not math.isfinite(value):
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise PipelineError(f"params.yaml: {name} is {show(value)}; it must lie in [-2^63, 2^63)")
    return float(value) if tp is float else value


def _unknown_key(section: str, key: Any, known: list[str]) -> PipelineError:
    shown = str(key)[:60] if str(key).isprintable() else show(key)
    if f"{section}.{key}" in REMOVED:
        return PipelineError(f"params.yaml: {section}.{shown} was removed: {REMOVED[f'{section}.{key}']}; delete it")
    new_name = RENAMED.get(f"{section}.{key}")
    if new_name:
        return PipelineError(f"params.yaml: {section}.{shown} was renamed; use {new_name} "
                             f"({field_help(new_name)})")
    close = difflib.get_close_matches(str(key)[:100], known, n=1)
    listed = ", ".join(known)
    # A long list would bury the one line the user needs; the reference page has every key.
    if close:
        hint = f"did you mean {section}.{close[0]}?"
    elif len(listed) <= 200:
        hint = f"valid keys: {listed}"
    else:
        hint = f"docs/params.md lists the {len(known)} keys of {section}"
    return PipelineError(f"params.yaml: unknown key {section}.{shown}; {hint}")


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
            raise _unknown_key(section, key, known)
        values[key] = _coerce(f"{section}.{key}", value, hints[key])
    params = cls(**values)
    check_declared(section, params)
    if hasattr(params, "check"):
        params.check()
    return params


def field_help(name: str) -> str:
    """The declared meaning of param ``section.key``."""
    section, key = name.split(".", 1)
    return next(f.metadata["help"] for f in dataclasses.fields(SECTIONS[section]) if f.name == key)


def read_params_file(path: os.PathLike | str = PARAMS_FILE) -> dict:
    """Read ``params.yaml`` as a plain mapping, with one-line errors for a missing or broken file."""
    path = Path(path)
    raw = read_yaml(path)
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
    runtime: RuntimeParams = field(default_factory=RuntimeParams)
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
