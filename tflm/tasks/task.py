"""`Task`: everything tflm needs to know about a downstream classification task."""

import copy
import dataclasses
from typing import Optional

from tflm.features.names import canonical_feature_name

# Word lists of the reference code (test_downstream.py). The reference lists
# class / posneg words as [':)', ':('] and ['positive', 'negative']; tflm keeps
# them in LABEL order (negative first), which only permutes feature columns.
SENTIMENT_SUBSET_WORDS = (
    ":)", ":(", "great", "charming", "flawed", "classic", "interesting", "boring",
    "sad", "happy", "terrible", "fantastic", "exciting", "strong",
)
SENTIMENT_CLASS_WORDS = (":(", ":)")  # negative, positive
SENTIMENT_POSNEG_WORDS = ("negative", "positive")
NEWS_SUBSET_WORDS = (
    "world", "politics", "sports", "business", "science", "financial", "market",
    "foreign", "technology", "international", "stock", "company", "tech", "technologies",
)
# AG News label order World, Sports, Business, Sci/Tech.
NEWS_CLASS_WORDS = ("foreign", "sports", "financial", "scientific")

MOVIE_PROMPT = " This movie is "
SENTIMENT_PROMPT = " The sentiment is "
NEWS_PROMPT = " This article is about "

SPLIT_PROTOCOLS = ("fixed", "random_90_10")

DEFAULT_SOLVER = {"solver": "liblinear", "multi_class": "auto"}

# The most classes a task may have, and so the largest label a task file may hold when the count
# is inferred from it (`tflm.tasks.loaders`): arrays and label lists are sized by the class count.
MAX_NUM_CLASSES = 10_000


def _int(value, field, name, minimum=None, maximum=None):
    """`value` as an int (no bool, no fraction); TypeError / ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Task {name!r}: {field} must be an integer, got {value!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"Task {name!r}: {field} must be {bound}, got {value}")
    return value


def _optional_str(value, field, name):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"Task {name!r}: {field} must be a string or None, got {value!r}")
    return value


def _tuple_of_str(value, field):
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError(f"Task.{field} must be a list of strings, not a single string {value!r}")
    out = tuple(value)
    for v in out:
        if not isinstance(v, str) or not v:
            raise TypeError(f"Task.{field} must hold non-empty strings, got {v!r}")
    return out


@dataclasses.dataclass
class Task:
    """A downstream text classification task.

    Args:
        name: registry name (e.g. "sst2").
        num_classes: number of labels k; labels are integers 0..k-1.
        label_names: one name per label, in label order.
        prompt: text appended to every input for the prompted ("*") rows of
            the paper, or None. The reference prompts end with a space, which
            GPT-2 BPE turns into its own token (id 220); that is kept.
        subset_words: the paper's "subset" word list (p_f restricted to them).
        class_words: the paper's class words. When ``len(class_words) ==
            num_classes``, word i stands for class i (label order). sst5 is the
            one exception: the paper uses the two sentiment class words
            ``:(`` / ``:)`` for its five classes.
        posneg_words: ``('negative', 'positive')`` for sentiment tasks (label
            order for binary ones; sst5 uses the same two words).
        zeroshot_words: the zero-shot classifier's words, one per class in
            label order (``task.json`` key ``"zeroshot_words"``). Empty: the
            class words when there is one per class (the paper's), else no
            zero-shot row.
        split_protocol: "fixed" (train/dev/test files) or "random_90_10"
            (average over `n_splits` random 90/10 splits of all the data, as
            the reference does for CR and MPQA).
        n_splits, test_fraction, split_seed: parameters of the random protocol.
        probe_solver_exception: None, or ``{"features": [...], "solver": ...,
            "multi_class": ...}``: the reference fits these feature types with
            another solver (sst5: 'sag', multinomial for phi_p/subset/class/posneg).
        tfds_name: TensorFlow Datasets builder ("glue/sst2", "ag_news_subset",
            ...), or None when TFDS has no builder for the task.
        tfds_text_keys: feature keys joined with a space to make the text.
        tfds_label_key: label feature key.
        tfds_splits: tflm split name -> TFDS split name.
        tfds_label_map: TFDS label index -> tflm label (None: identity).
        hf_name: Hugging Face `datasets` name, for reference only.
        data_dir: folder holding this task's tsv files (user tasks), or None.
        description: one line.
    """

    name: str
    num_classes: int
    label_names: tuple = ()
    prompt: Optional[str] = None
    subset_words: tuple = ()
    class_words: tuple = ()
    posneg_words: tuple = ()
    zeroshot_words: tuple = ()
    split_protocol: str = "fixed"
    n_splits: int = 1
    test_fraction: float = 0.1
    split_seed: int = 0
    probe_solver_exception: Optional[dict] = None
    tfds_name: Optional[str] = None
    tfds_text_keys: tuple = ()
    tfds_label_key: Optional[str] = None
    tfds_splits: dict = dataclasses.field(default_factory=dict)
    tfds_label_map: Optional[tuple] = None
    hf_name: Optional[str] = None
    data_dir: Optional[str] = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Task.name must be a non-empty string, got {self.name!r}")
        _int(self.num_classes, "num_classes", self.name, 2, MAX_NUM_CLASSES)
        self.label_names = _tuple_of_str(self.label_names, "label_names") or tuple(
            str(i) for i in range(self.num_classes)
        )
        if len(self.label_names) != self.num_classes:
            raise ValueError(
                f"Task {self.name!r}: {len(self.label_names)} label_names for "
                f"{self.num_classes} classes"
            )
        _optional_str(self.prompt, "prompt", self.name)
        if self.prompt == "":
            self.prompt = None
        self.subset_words = _tuple_of_str(self.subset_words, "subset_words")
        self.class_words = _tuple_of_str(self.class_words, "class_words")
        self.posneg_words = _tuple_of_str(self.posneg_words, "posneg_words")
        self.zeroshot_words = _tuple_of_str(self.zeroshot_words, "zeroshot_words")
        if self.zeroshot_words and len(self.zeroshot_words) != self.num_classes:
            raise ValueError(
                f"Task {self.name!r}: {len(self.zeroshot_words)} zeroshot_words for "
                f"{self.num_classes} classes (one word per class, in label order)"
            )
        if self.split_protocol not in SPLIT_PROTOCOLS:
            raise ValueError(
                f"Task {self.name!r}: split_protocol must be one of {SPLIT_PROTOCOLS}, "
                f"got {self.split_protocol!r}"
            )
        fraction = self.test_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
            raise ValueError(f"Task {self.name!r}: test_fraction must be a number in (0, 1), got {fraction!r}")
        _int(self.n_splits, "n_splits", self.name, 1)
        _int(self.split_seed, "split_seed", self.name)
        if self.probe_solver_exception is not None:
            exc = self.probe_solver_exception
            if not isinstance(exc, dict):
                raise TypeError(f"Task {self.name!r}: probe_solver_exception must be an object, got {exc!r}")
            exc = dict(exc)
            missing = {"features", "solver"} - set(exc)
            if missing:
                raise ValueError(
                    f"Task {self.name!r}: probe_solver_exception needs keys {sorted(missing)}"
                )
            features = _tuple_of_str(exc["features"], "probe_solver_exception.features")
            exc["features"] = [canonical_feature_name(f) for f in features]
            exc.setdefault("multi_class", "auto")
            for key in ("solver", "multi_class"):
                if not isinstance(exc[key], str):
                    raise TypeError(f"Task {self.name!r}: probe_solver_exception.{key} must be a string")
            self.probe_solver_exception = exc
        self.tfds_text_keys = _tuple_of_str(self.tfds_text_keys, "tfds_text_keys")
        for field in ("tfds_name", "tfds_label_key", "hf_name", "data_dir"):
            _optional_str(getattr(self, field), field, self.name)
        if not isinstance(self.description, str):
            raise TypeError(f"Task {self.name!r}: description must be a string, got {self.description!r}")
        splits = self.tfds_splits or {}
        if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
            raise TypeError(f"Task {self.name!r}: tfds_splits must map split names to strings, got {splits!r}")
        self.tfds_splits = dict(splits)
        if self.tfds_label_map is not None:
            if isinstance(self.tfds_label_map, (str, dict)) or not hasattr(self.tfds_label_map, "__iter__"):
                raise TypeError(f"Task {self.name!r}: tfds_label_map must be a list of labels")
            self.tfds_label_map = tuple(
                _int(i, "tfds_label_map", self.name, 0, self.num_classes - 1) for i in self.tfds_label_map
            )

    # --- derived ------------------------------------------------------------
    @property
    def is_random_split(self):
        return self.split_protocol == "random_90_10"

    @property
    def class_words_per_class(self):
        """True when class word i stands for class i."""
        return len(self.class_words) == self.num_classes

    @property
    def zero_shot_words(self):
        """One word per class for the zero-shot classifier (see `zeroshot_words`), or () for none."""
        if self.zeroshot_words:
            return self.zeroshot_words
        return self.class_words if self.class_words_per_class else ()

    @property
    def word_lists(self):
        """{"subset": words, "class": words, "posneg": words}, non-empty lists only."""
        lists = {"subset": self.subset_words, "class": self.class_words, "posneg": self.posneg_words}
        return {k: list(v) for k, v in lists.items() if v}

    def probe_solver(self, feature):
        """The reference's logistic-regression solver for a feature type.

        Returns ``{"solver": ..., "multi_class": ...}``: liblinear / auto
        except for the task's `probe_solver_exception` features.
        """
        feature = canonical_feature_name(feature)
        exc = self.probe_solver_exception
        if exc and feature in exc["features"]:
            return {"solver": exc["solver"], "multi_class": exc["multi_class"]}
        return dict(DEFAULT_SOLVER)

    def with_prompt(self, prompt):
        """A copy with another prompt (None for none)."""
        return self.replace(prompt=prompt)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(copy.deepcopy(self), **changes)

    # --- serialization ------------------------------------------------------
    def get_config(self):
        """A JSON-serializable dict; `Task.from_config` inverts it."""
        config = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = copy.deepcopy(value)
            config[field.name] = value
        return config

    to_dict = get_config

    @classmethod
    def from_config(cls, config):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown Task fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**config)

    from_dict = from_config

    def __repr__(self):
        return (
            f"Task(name={self.name!r}, num_classes={self.num_classes}, "
            f"prompt={self.prompt!r}, split_protocol={self.split_protocol!r})"
        )
