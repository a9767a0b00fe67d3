"""`FinetuneConfig`: the validated settings of a fine-tuning grid."""

import dataclasses
import math
import numbers

from tflm.finetune.data import BUCKET_WINDOW

DEFAULT_LRS = (5e-5, 1e-4, 3e-4)
DEFAULT_BATCH_SIZES = {"sst2": (8, 16, 32), "sst5": (8, 16, 32), "agnews": (8, 12, 16)}
FALLBACK_BATCH_SIZES = (8, 16, 32)
SPLIT_PROTOCOLS = ("paper", "files")
OPTIMIZERS = ("adam", "fused_adam")


def _number_list(name, values, integer):
    """A tuple of distinct positive finite numbers; ValueError naming `name` otherwise."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name}: expected a sequence of numbers, got the string {values!r}")
    if isinstance(values, numbers.Number):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{name}: expected at least one value")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name}: {v!r} is not a number")
        if integer and not float(v).is_integer():
            raise ValueError(f"{name}: {v!r} is not an integer")
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: {v!r} must be a positive number")
        v = int(v) if integer else float(v)
        if v in out:
            raise ValueError(f"{name}: {v!r} is repeated")
        out.append(v)
    return tuple(out)


def _optional_positive_int(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of `tflm.finetune.finetune`, checked on construction (ValueError naming the field).

    Args:
        task: a task name or a folder of tsv files (`task_from_folder`).
        data_dir: where the task's tsv files are (see `load_split`).
        prompt: False, True (the task's prompt, the paper's "*" rows), or a
            prompt string.
        lrs: learning rates (a sequence of positive numbers).
        batch_sizes: GLOBAL batch sizes: the number of examples per
            optimizer step summed over all replicas (each replica gets
            batch / replicas, which must divide). None: the paper's
            {8, 16, 32} (sst2, sst5) or {8, 12, 16} (agnews).
        epochs: epochs per run (10 in the paper).
        out_dir: output folder; running again with the same folder resumes.
        seed: seeds the splits, the head's initialisation, data order and dropout.
        early_stop: None, or stop a run after this many epochs without a
            better dev accuracy.
        max_train / max_eval: seeded subsets of at most this many training /
            dev and test examples.
        splits: "paper" (see `finetune_splits`) or "files".
        dropout: dropout before the linear head (0.1 in the reference).
        max_length: token limit of text + prompt (default: the model's
            context); longer texts lose their start, the prompt is kept.
        strip_prompt_space: drop the prompt's trailing space.
        pad_to_multiple: batches are padded to their longest example rounded
            up to this multiple (fewer distinct shapes to trace).
        bucket_window: training batches are length-sorted within windows of this
            many batches of each epoch's (seed, epoch) permutation, then shuffled
            (`tflm.features.batching.shuffled_length_batches`); 0: unsorted.
        jit_compile: XLA (recompiles for every new padded length; off by default).
        export_dir: also export the selected model as a SavedModel there. It
            serves float32 whatever `dtype` trained it (the float32 master
            weights, float32 compute): it then runs on any device and gives
            the Keras model's probabilities within 1e-5.
        export_raw_text: add the optional raw-string endpoint to the export
            (GPT-2 BPE only; loading it then needs `import tensorflow_text`).
        keep_weights: keep every run's best weights (default: only the
            selected-so-far run's, to bound disk use).
        dtype: compute dtype; "bfloat16" / "float16" train with the Keras
            mixed policy (float32 weights).
        optimizer: "adam" (Keras' `Adam`) or "fused_adam" (`FusedAdam`:
            TensorFlow's fused Adam kernel, one pass per variable; the same
            update on dense gradients, and on the token embedding's sparse
            gradient the dense Adam of torch, see `FusedAdam`).
    """

    task: object
    data_dir: str | None = None
    prompt: bool | str = False
    lrs: tuple[float, ...] = DEFAULT_LRS
    batch_sizes: tuple[int, ...] | None = None
    epochs: int = 10
    out_dir: str = "finetune_out"
    seed: int = 0
    early_stop: int | None = None
    max_train: int | None = None
    max_eval: int | None = None
    splits: str = "paper"
    dropout: float = 0.1
    max_length: int | None = None
    strip_prompt_space: bool = False
    pad_to_multiple: int = 8
    bucket_window: int = BUCKET_WINDOW
    jit_compile: bool = False
    export_dir: str | None = None
    export_raw_text: bool = False
    keep_weights: bool = False
    dtype: str = "float32"
    optimizer: str = "adam"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("lrs", _number_list("lrs", self.lrs, integer=False))
        if self.batch_sizes is not None:
            put("batch_sizes", _number_list("batch_sizes", self.batch_sizes, integer=True))
        for name in ("epochs", "pad_to_multiple"):
            if _optional_positive_int(name, getattr(self, name)) is None:
                raise ValueError(f"{name} must be a positive integer, got None")
        for name in ("early_stop", "max_train", "max_eval", "max_length"):
            _optional_positive_int(name, getattr(self, name))
        if isinstance(self.bucket_window, bool) or not isinstance(self.bucket_window, numbers.Integral) \
                or self.bucket_window < 0:
            raise ValueError(f"bucket_window must be an integer >= 0, got {self.bucket_window!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.splits not in SPLIT_PROTOCOLS:
            raise ValueError(f"splits must be one of {SPLIT_PROTOCOLS}, got {self.splits!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("jit_compile", "keep_weights", "export_raw_text", "strip_prompt_space"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.prompt, (bool, str)):
            raise ValueError(f"prompt must be False, True or a string, got {self.prompt!r}")
        if not self.out_dir:
            raise ValueError("out_dir must be a folder path")
        from tflm.models.language_model import check_dtype

        check_dtype(self.dtype)

    def grid_batch_sizes(self, task_name):
        """The batch sizes of the grid: the configured ones, or the paper's for `task_name`."""
        if self.batch_sizes is not None:
            return self.batch_sizes
        return tuple(DEFAULT_BATCH_SIZES.get(task_name, FALLBACK_BATCH_SIZES))
