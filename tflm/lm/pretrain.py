"""`tflm pretrain`: train a causal LM with cross-entropy or Quad via `model.fit`.

`pretrain(PretrainConfig(...))` (or `pretrain(**fields)`) runs three stages:
`prepare` (model, tokenizer, token blocks, optimizer), `run` (`model.fit` in
checkpointed intervals) and `finalize` (evaluation, model card, saved model).
"""

import dataclasses
import hashlib
import math
import os
import platform
import time
from typing import Optional

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tflm._compat import ClipGradientsHook
from tflm.callbacks import BACKUP_DIR, AtomicBackupAndRestore, Throughput
from tflm.distribute import get_strategy
from tflm.lm.causal_lm import CausalLM, make_untied_head
from tflm.lm.corpus import block_dataset, pack_blocks, read_corpus
from tflm.models.keras_hub_preset import save_preset_dir
from tflm.models.output_embeddings import output_embeddings
from tflm.models.language_model import LanguageModel
from tflm.models.tiny import gpt2_config
from tflm.tokenization import gpt2_tokenizer

CHECKPOINT_DIR = "checkpoints"


@keras.saving.register_keras_serializable(package="tflm")
class ReplicaAwareAdamW(ClipGradientsHook, keras.optimizers.AdamW):
    """AdamW whose `global_clipnorm` clips the global (all-replica) gradient.

    Keras clips each replica's gradient before the cross-replica sum, so with
    R replicas the summed gradient can have norm up to R * global_clipnorm and
    a multi-replica run is not the single-device run it should equal. Here,
    with several replicas, the norm is taken of the all-reduced gradient (one
    extra all-reduce) and every replica's local gradient is scaled by the same
    factor min(1, clipnorm / norm), so the sum is the clipped global gradient.
    The norm is computed as Keras computes it on one device (for
    `tf.IndexedSlices`, from their rows; the all-reduce gathers the replicas'
    rows), so with one replica this is exactly `keras.optimizers.AdamW`.
    """

    def clip_gradients(self, grads):
        ctx = tf.distribute.get_replica_context()
        clip = self.global_clipnorm
        if not clip or clip <= 0 or self.clipnorm or ctx is None or ctx.num_replicas_in_sync == 1:
            return self.keras_clip_gradients(grads)
        summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in grads if g is not None])
        norm = tf.sqrt(tf.add_n([
            tf.reduce_sum(tf.square(tf.cast(g.values if isinstance(g, tf.IndexedSlices) else g, "float32")))
            for g in summed
        ]))
        # Exactly keras' clip_by_global_norm from here on (`v * scale` also turns
        # IndexedSlices dense, as on one device): no-op below the threshold,
        # NaN for an inf/NaN norm.
        scale = clip * tf.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)
        return [g * scale if g is not None else g for g in grads]


class StopAtStep(keras.callbacks.Callback):
    """Ends training after `total_steps` global steps (mid-interval: a shorter last interval).

    Keras then still runs the interval's validation and epoch-end callbacks
    (backup, kept checkpoint), so the run is checkpointed at its last step.
    """

    def __init__(self, total_steps, steps_per_interval, start_interval=0):
        super().__init__()
        self.total_steps = total_steps
        self.steps_per_interval = steps_per_interval
        self.start_interval = start_interval

    def on_epoch_begin(self, epoch, logs=None):
        self._step = epoch * self.steps_per_interval

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step >= self.total_steps:
            self.model.stop_training = True


class KeepCheckpoints(keras.callbacks.Callback):
    """Saves a loadable model directory at the end of every interval ("epoch")."""

    def __init__(self, directory, make_lm, steps_per_interval, card, total_steps=None):
        super().__init__()
        self.directory = directory
        self.make_lm = make_lm
        self.steps_per_interval = steps_per_interval
        self.card = card
        self.total_steps = total_steps

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_interval
        if self.total_steps is not None:
            step = min(step, self.total_steps)
        card = dict(self.card, step=step, **{k: float(v) for k, v in (logs or {}).items()})
        if "val_softmax_xent" in card:
            card["val_perplexity"] = math.exp(card["val_softmax_xent"])
        save_preset_dir(
            self.make_lm(),
            os.path.join(self.directory, f"step_{step:07d}"),
            weights_dtype="float16",
            model_card=card,
        )


OBJECTIVES = ("xent", "quad")


@dataclasses.dataclass
class PretrainConfig:
    """Every setting of one pretraining run (validated on construction).

    Model: `config` names a from-scratch GPT-2 size, or `init` a model SPEC
    to continue from. `untied` adds the paper's head (body -> f_lin -> Phi);
    `fix_phi` freezes Phi; `init_embeddings` / `init_phi` initialise the
    input embeddings / Phi from a (V, d) .npy or a model SPEC. `tokenizer`
    (a model SPEC) takes that model's tokenizer for a from-scratch body
    (default: GPT-2 BPE); with a Phi of another width than the body, f_lin
    maps the body's width to Phi's. `whiten` (None: on for Quad with a
    frozen Phi) trains f = G^-1/2 g (see `UntiedHead`); `f_lin_init` is
    f_lin's kernel initializer for a new head. `normalize_phi` (None: on
    for Quad with a frozen Phi) stores the given Phi scaled to
    ||Phi||_F = 1 (tr G = 1). The Quad loss -f.phi_w + 1/2 f^T G f and the
    logits f.Phi^T are invariant under (f, Phi) -> (s f, Phi / s), and so
    is whitened training (g and G^-1/2 phi_w do not change), so this only
    fixes the gauge: without it f* = G^-1 Phi p has norm ~1/sqrt(tr G)
    (~0.005 for a V = 50k embedding) and a probe's L2 penalty, tuned for
    O(1) features, sees none of it. `mixed_precision` trains
    the backbone under Keras' "mixed_bfloat16" policy (the head, the losses
    and the saved weights stay float32).

    Training: `steps` optimizer steps of a global batch of `batch_size`
    blocks of `seq_len` tokens; AdamW with linear warmup then cosine decay
    to lr/10, global-norm clipping at `clip_norm`. Every `checkpoint_every`
    steps (and at the last step) a validation pass, a kept checkpoint and a
    resumable backup.
    """

    objective: str
    corpus: str
    out_dir: str
    valid: Optional[str] = None
    config: str = "small"
    init: Optional[str] = None
    untied: bool = False
    fix_phi: bool = False
    init_embeddings: Optional[str] = None
    init_phi: Optional[str] = None
    tokenizer: Optional[str] = None
    whiten: Optional[bool] = None
    f_lin_init: str = "glorot_uniform"
    normalize_phi: Optional[bool] = None
    mixed_precision: bool = False
    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    checkpoint_every: int = 200
    valid_blocks: int = 64
    strategy: str = "auto"
    seed: int = 0
    jit_compile: bool = True
    weights_dtype: str = "float32"
    verbose: str = "auto"
    command: Optional[str] = None

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}: choose one of {OBJECTIVES}")
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "valid_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.clip_norm < 0:
            raise ValueError("warmup_steps, weight_decay and clip_norm must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.fix_phi and not (self.untied or self.init is not None):
            raise ValueError("fix_phi needs an untied head (untied=True): a tied Phi is the trained input embedding")
        if self.whiten and not (self.objective == "quad" and self.fix_phi):
            raise ValueError("whiten=True is for the Quad objective with a frozen Phi (objective='quad', fix_phi=True)")
        if self.tokenizer is not None and self.init is not None:
            raise ValueError("tokenizer is for a from-scratch body; a model given by init keeps its own tokenizer")
        if self.weights_dtype not in ("float32", "float16"):
            raise ValueError(f"weights_dtype={self.weights_dtype!r}: choose float32 or float16")

    @property
    def use_normalized_phi(self):
        return self.objective == "quad" and self.fix_phi if self.normalize_phi is None else bool(self.normalize_phi)

    @property
    def use_whitening(self):
        return self.objective == "quad" and self.fix_phi if self.whiten is None else bool(self.whiten)

    def card(self):
        """The run's settings as recorded in the model card (no machine paths)."""
        return {
            "objective": self.objective,
            "corpus": _describe_path(self.corpus),
            "valid": None if self.valid is None else _describe_path(self.valid),
            "config": self.config if self.init is None else f"init:{_describe_path(self.init)}",
            "init_embeddings": _describe_path(self.init_embeddings),
            "init_phi": _describe_path(self.init_phi),
            "whiten": self.use_whitening,
            "f_lin_init": self.f_lin_init,
            "normalize_phi": self.use_normalized_phi,
            "mixed_precision": "mixed_bfloat16" if self.mixed_precision else None,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "tokens_seen": self.steps * self.batch_size * self.seq_len,
            "lr": self.lr,
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
            "seed": self.seed,
            "command": _describe_command(self.command),
        }


def _describe_path(path):
    """A path as the card records it: its last two components (no machine-specific prefix).

    The corpus is identified by this name and its SHA-256 (`corpus_sha256`).
    """
    if path is None:
        return None
    path = os.path.normpath(str(path))
    if not (os.path.isabs(path) or os.path.exists(path)):
        return path  # a name (tiny-gpt2, a preset), not a path
    return "/".join(path.split(os.sep)[-2:])


def _describe_command(command):
    """The command line with every absolute path shortened as `_describe_path` does."""
    if command is None:
        return None
    return " ".join(_describe_path(t) if os.path.isabs(t) else t for t in str(command).split())


def _load_matrix(source, vocabulary_size, hidden_dim, what):
    """A (V, d) matrix from a .npy file or from another model's Phi."""
    if str(source).endswith(".npy"):
        m = np.load(source)
    else:
        from tflm.models import load_lm

        m = keras.ops.convert_to_numpy(load_lm(source).output_embeddings())
    if m.shape[0] != vocabulary_size or (hidden_dim is not None and m.shape[1] != hidden_dim):
        raise ValueError(
            f"{what} from {source}: shape {m.shape}, expected ({vocabulary_size}, {hidden_dim or 'd'})"
        )
    return m


def unit_frobenius(phi):
    """Phi / ||Phi||_F, i.e. tr(G) = 1: the Quad gauge of a frozen Phi (see `PretrainConfig`)."""
    phi = np.asarray(phi, dtype=np.float32)
    return phi / np.float32(np.linalg.norm(phi.astype(np.float64)))


def _with_policy(backbone, policy):
    """The same backbone (weights copied) under another dtype policy."""
    if backbone.dtype_policy.name == policy:
        return backbone
    config = dict(backbone.get_config(), dtype=policy)
    clone = type(backbone).from_config(config)
    clone.set_weights(backbone.get_weights())
    return clone


def build_causal_lm(
    objective,
    config="small",
    init=None,
    untied=False,
    fix_phi=False,
    init_embeddings=None,
    init_phi=None,
    tokenizer=None,
    whiten=None,
    f_lin_init="glorot_uniform",
    mixed_precision=False,
    normalize_phi=None,
):
    """A `CausalLM` and its tokenizer (the arguments are `PretrainConfig`'s model fields)."""
    from tflm.models import load_lm

    if fix_phi and not (untied or init is not None):
        raise ValueError("fix_phi needs an untied head (untied=True): a tied Phi is the trained input embedding")
    whiten_asked = bool(whiten)
    if whiten is None:
        whiten = objective == "quad" and fix_phi
    if normalize_phi is None:
        normalize_phi = objective == "quad" and fix_phi
    head = None
    if init is not None:
        lm = load_lm(init)
        backbone, tokenizer, head = lm.backbone, lm.tokenizer, lm.head
        if fix_phi and head is None and not untied:
            raise ValueError("fix_phi needs an untied head (untied=True): a tied Phi is the trained input embedding")
        if mixed_precision:
            backbone = _with_policy(backbone, "mixed_bfloat16")
    else:
        tokenizer = gpt2_tokenizer() if tokenizer is None else load_lm(tokenizer).tokenizer
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=tokenizer.vocabulary_size,
            dropout=0.0,
            **gpt2_config(config),
            dtype="mixed_bfloat16" if mixed_precision else None,
            name="gpt2_backbone",
        )
    v, d = backbone.vocabulary_size, backbone.hidden_dim
    if init_embeddings is not None:
        backbone.token_embedding.embeddings.assign(_load_matrix(init_embeddings, v, d, "input embeddings"))
    if untied and head is None:
        phi = None
        if init_phi is not None:
            phi = _load_matrix(init_phi, v, None, "Phi")
        elif init_embeddings is not None or init is not None:
            phi = keras.ops.convert_to_numpy(
                backbone.token_embedding.embeddings if init_embeddings is not None else output_embeddings(backbone))
        if phi is not None and normalize_phi:
            phi = unit_frobenius(phi)
        head = make_untied_head(
            v, d if phi is None else phi.shape[1], trainable_phi=not fix_phi, phi=phi, input_dim=d,
            whiten=whiten, kernel_initializer=f_lin_init,
        )
    elif head is not None:
        if whiten_asked and not head.whiten:
            raise ValueError(f"{init}: its head has no whitening; start from its weights with init_embeddings/init_phi")
        if init_phi is not None:
            head.set_phi(_load_matrix(init_phi, v, head.hidden_dim, "Phi"))
        if fix_phi:
            head.trainable_phi = False
            head.phi.trainable = False
    elif init_phi is not None:
        raise ValueError("init_phi needs an untied head (untied=True); use init_embeddings for a tied model")
    model = CausalLM(backbone, objective=objective, head=head, name=f"causal_lm_{objective}")
    return model, tokenizer


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass
class PreparedRun:
    """What `prepare` builds: the compiled model, its tokenizer, data and strategy."""

    model: CausalLM
    tokenizer: object
    strategy: object
    train_blocks: np.ndarray
    valid_blocks: Optional[np.ndarray]
    start_interval: int
    card: dict


def prepare(cfg):
    """Stage 1: model, tokenizer, token blocks, optimizer (compiled), the card's settings."""
    keras.utils.set_random_seed(cfg.seed)
    strat = get_strategy(cfg.strategy)
    with strat.scope():
        model, tokenizer = build_causal_lm(
            cfg.objective, cfg.config, cfg.init, cfg.untied, cfg.fix_phi, cfg.init_embeddings, cfg.init_phi,
            cfg.tokenizer, cfg.use_whitening, cfg.f_lin_init, cfg.mixed_precision, cfg.use_normalized_phi,
        )
    max_len = getattr(model.backbone, "max_sequence_length", None)
    if max_len is not None and cfg.seq_len > max_len:
        raise ValueError(f"seq_len {cfg.seq_len} exceeds the model's max_sequence_length {max_len}")
    train_blocks = pack_blocks(tokenizer, read_corpus(cfg.corpus), cfg.seq_len, source=cfg.corpus)
    valid_blocks = None
    if cfg.valid is not None:
        valid_blocks = pack_blocks(tokenizer, read_corpus(cfg.valid), cfg.seq_len, source=cfg.valid)
        valid_blocks = valid_blocks[: max(cfg.valid_blocks, cfg.batch_size)]
        valid_blocks = valid_blocks[: (len(valid_blocks) // cfg.batch_size) * cfg.batch_size]
        if len(valid_blocks) == 0:
            raise ValueError(f"{cfg.valid}: fewer than one batch ({cfg.batch_size}) of validation blocks")
    with strat.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(cfg.steps - cfg.warmup_steps, 1),
            alpha=0.1,
            warmup_target=cfg.lr,
            warmup_steps=cfg.warmup_steps,
        )
        optimizer = ReplicaAwareAdamW(
            learning_rate=schedule, weight_decay=cfg.weight_decay, global_clipnorm=cfg.clip_norm
        )
        model.compile(optimizer=optimizer, jit_compile=cfg.jit_compile)
        model({"token_ids": train_blocks[:1, :-1], "padding_mask": np.ones_like(train_blocks[:1, :-1])})
    card = dict(cfg.card())
    card.update(
        {
            "corpus_sha256": _sha256(cfg.corpus),
            "corpus_tokens": int(train_blocks.size),
            "untied": model.head is not None,
            "fixed_phi": not model.phi_trainable,
            "num_replicas": strat.num_replicas_in_sync,
            "max_sequence_length": int(max_len or cfg.seq_len),
            "tokenizer": tokenizer.name,
        }
    )
    start_interval = AtomicBackupAndRestore.completed_epochs(os.path.join(cfg.out_dir, BACKUP_DIR))
    return PreparedRun(model, tokenizer, strat, train_blocks, valid_blocks, start_interval, card)


def _make_lm(cfg, run):
    return LanguageModel(run.model.backbone, run.tokenizer, head=run.model.head, name=f"tflm-{cfg.objective}")


def _valid_dataset(cfg, run):
    if run.valid_blocks is None:
        return None, None
    ds = block_dataset(run.valid_blocks, cfg.batch_size, shuffle=False, repeat=False)
    return ds, len(run.valid_blocks) // cfg.batch_size


def run_training(cfg, run, callbacks=None):
    """Stage 2: `model.fit` in intervals of `checkpoint_every` steps (the last may be shorter).

    Each interval ends with validation, a kept checkpoint in
    `out_dir/checkpoints/step_N` and a backup, so a killed run restarts from
    the last interval with the same data order. Returns the Keras History.
    """
    every = cfg.checkpoint_every
    intervals = math.ceil(cfg.steps / every)
    train_ds = block_dataset(run.train_blocks, cfg.batch_size, seed=cfg.seed, start_step=run.start_interval * every)
    valid_ds, valid_steps = _valid_dataset(cfg, run)
    # The backup comes last: it commits an interval only after its kept checkpoint
    # (and the caller's callbacks) are written, so a failed write re-runs the interval.
    fit_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(os.path.join(cfg.out_dir, "logs")),
        Throughput(cfg.batch_size * cfg.seq_len, "tok/s"),
        StopAtStep(cfg.steps, every),
        KeepCheckpoints(
            os.path.join(cfg.out_dir, CHECKPOINT_DIR), lambda: _make_lm(cfg, run), every, run.card, cfg.steps
        ),
        *(callbacks or []),
        AtomicBackupAndRestore(os.path.join(cfg.out_dir, BACKUP_DIR)),
    ]
    history = run.model.fit(
        train_ds,
        epochs=intervals,
        steps_per_epoch=every,
        validation_data=valid_ds,
        validation_steps=valid_steps,
        callbacks=fit_callbacks,
        shuffle=False,  # the order is block_dataset's, a function of (seed, step)
        verbose=cfg.verbose,
    )
    if history.history.get("loss") and not np.isfinite(history.history["loss"][-1]):
        raise FloatingPointError("training diverged (loss is NaN/inf); lower the learning rate")
    return history


def finalize(cfg, run, history, wall_time_s):
    """Stage 3: validation numbers, the model card and `out_dir/model`. Returns the card."""
    card = dict(run.card)
    valid_ds, valid_steps = _valid_dataset(cfg, run)
    if valid_ds is not None:
        ev = run.model.evaluate(valid_ds, steps=valid_steps, verbose=0, return_dict=True)
        card.update(
            {
                "val_objective": float(ev["loss"]),
                "val_softmax_xent": float(ev["softmax_xent"]),
                "val_perplexity": float(math.exp(ev["softmax_xent"])),
                "val_tokens": int(run.valid_blocks.size - len(run.valid_blocks)),
            }
        )
    card.update(
        {
            "wall_time_s": round(wall_time_s, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.system()}",
            "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        }
    )
    save_preset_dir(_make_lm(cfg, run), os.path.join(cfg.out_dir, "model"), weights_dtype=cfg.weights_dtype, model_card=card)
    return card


def pretrain(run_config=None, callbacks=None, **fields):
    """Train, checkpoint (resumable), evaluate and save a causal LM; returns the model card.

    Pass a `PretrainConfig` or its fields as keywords. `batch_size` is the
    global batch (split across replicas). The final model is written to
    `out_dir/model` (loadable with `tflm.load_lm`), with `model_card.json`.

    `callbacks`: optional extra Keras callbacks, run after the built-in ones
    (backup, NaN check, TensorBoard, tok/s, stop, kept checkpoints) on every
    step; e.g. for monitoring, or for tests that interrupt a run mid-interval.
    """
    cfg = PretrainConfig(**fields) if run_config is None else dataclasses.replace(run_config, **fields)
    t_start = time.time()
    run = prepare(cfg)
    history = run_training(cfg, run, callbacks)
    return finalize(cfg, run, history, time.time() - t_start)
