"""`tflm pretrain`: train a causal LM with cross-entropy or Quad via `model.fit`."""

import hashlib
import math
import os
import platform
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tflm._compat import ClipGradientsHook
from tflm.callbacks import AtomicBackupAndRestore, Throughput
from tflm.distribute import get_strategy
from tflm.lm.causal_lm import CausalLM, make_untied_head
from tflm.lm.corpus import block_dataset, pack_blocks, read_corpus
from tflm.models.keras_hub_preset import save_preset_dir
from tflm.models.output_embeddings import output_embeddings
from tflm.models.language_model import LanguageModel
from tflm.models.tiny import gpt2_config
from tflm.tokenization import gpt2_tokenizer

BACKUP_DIR = "backup"
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


class KeepCheckpoints(keras.callbacks.Callback):
    """Saves a loadable model directory at the end of every interval ("epoch")."""

    def __init__(self, directory, make_lm, steps_per_interval, card):
        super().__init__()
        self.directory = directory
        self.make_lm = make_lm
        self.steps_per_interval = steps_per_interval
        self.card = card

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_interval
        card = dict(self.card, step=step, **{k: float(v) for k, v in (logs or {}).items()})
        if "val_softmax_xent" in card:
            card["val_perplexity"] = math.exp(card["val_softmax_xent"])
        save_preset_dir(
            self.make_lm(),
            os.path.join(self.directory, f"step_{step:07d}"),
            weights_dtype="float16",
            model_card=card,
        )


def _load_matrix(source, vocabulary_size, hidden_dim, what):
    """A (V, d) matrix from a .npy file or from another model's Phi."""
    if str(source).endswith(".npy"):
        m = np.load(source)
    else:
        from tflm.models import load_lm

        m = keras.ops.convert_to_numpy(load_lm(source).output_embeddings())
    if m.shape != (vocabulary_size, hidden_dim):
        raise ValueError(f"{what} from {source}: shape {m.shape}, expected ({vocabulary_size}, {hidden_dim})")
    return m


def build_causal_lm(
    objective,
    config="small",
    init=None,
    untied=False,
    fix_phi=False,
    init_embeddings=None,
    init_phi=None,
    vocabulary_size=None,
    dropout=0.0,
):
    """A `CausalLM` and its tokenizer from a named config or an existing model."""
    if fix_phi and not (untied or (init is not None)):
        raise ValueError("--fix-phi needs an untied head (--untied): a tied Phi is the trained input embedding")
    if init is not None:
        from tflm.models import load_lm

        lm = load_lm(init)
        backbone, tokenizer, head = lm.backbone, lm.tokenizer, lm.head
        if fix_phi and head is None and not untied:
            raise ValueError("--fix-phi needs an untied head (--untied): a tied Phi is the trained input embedding")
    else:
        tokenizer = gpt2_tokenizer()
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary_size or tokenizer.vocabulary_size,
            dropout=dropout,
            **gpt2_config(config),
            name="gpt2_backbone",
        )
        head = None
    v, d = backbone.vocabulary_size, backbone.hidden_dim
    if init_embeddings is not None:
        backbone.token_embedding.embeddings.assign(_load_matrix(init_embeddings, v, d, "input embeddings"))
    if untied and head is None:
        phi = None
        if init_phi is not None:
            phi = _load_matrix(init_phi, v, d, "Phi")
        elif init_embeddings is not None or init is not None:
            phi = keras.ops.convert_to_numpy(
                backbone.token_embedding.embeddings if init_embeddings is not None else output_embeddings(backbone))
        head = make_untied_head(v, d, trainable_phi=not fix_phi, phi=phi)
    elif head is not None:
        if init_phi is not None:
            head.set_phi(_load_matrix(init_phi, v, d, "Phi"))
        if fix_phi:
            head.trainable_phi = False
            head.phi.trainable = False
    elif init_phi is not None:
        raise ValueError("--init-phi needs an untied head (--untied); use --init-embeddings for a tied model")
    return CausalLM(backbone, objective=objective, head=head, name=f"causal_lm_{objective}"), tokenizer


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrain(
    objective,
    corpus,
    out_dir,
    valid=None,
    config="small",
    init=None,
    untied=False,
    fix_phi=False,
    init_embeddings=None,
    init_phi=None,
    steps=1000,
    batch_size=16,
    seq_len=256,
    lr=1e-3,
    warmup_steps=100,
    weight_decay=0.01,
    clip_norm=1.0,
    checkpoint_every=200,
    valid_blocks=64,
    strategy="auto",
    seed=0,
    jit_compile=True,
    weights_dtype="float32",
    verbose="auto",
    command=None,
    callbacks=None,
):
    """Train, checkpoint (resumable), evaluate and save a causal LM.

    `batch_size` is the global batch (split across replicas). Training runs
    in intervals of `checkpoint_every` steps (Keras "epochs"): each interval
    ends with validation, a kept checkpoint in `out_dir/checkpoints/step_N`
    and a `BackupAndRestore` backup, so a killed run restarts from the last
    interval with the same data order. The final model is written to
    `out_dir/model` (loadable with `tflm.load_lm`), with `model_card.json`.
    Returns the model card (a dict).

    `callbacks`: optional extra Keras callbacks, run after the built-in ones
    (backup, NaN check, TensorBoard, tok/s, kept checkpoints) on every step;
    e.g. for monitoring, or for tests that interrupt a run mid-interval.
    """
    if steps < 1 or checkpoint_every < 1:
        raise ValueError("--steps and --checkpoint-every must be positive")
    if steps % checkpoint_every:
        raise ValueError(f"--steps ({steps}) must be a multiple of --checkpoint-every ({checkpoint_every})")
    t_start = time.time()
    keras.utils.set_random_seed(seed)
    strat = get_strategy(strategy)
    with strat.scope():
        model, tokenizer = build_causal_lm(
            objective, config, init, untied, fix_phi, init_embeddings, init_phi
        )
    max_len = getattr(model.backbone, "max_sequence_length", None)
    if max_len is not None and seq_len > max_len:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's max_sequence_length {max_len}")
    train_blocks = pack_blocks(tokenizer, read_corpus(corpus), seq_len, source=corpus)
    valid_blocks_arr = None
    if valid is not None:
        valid_blocks_arr = pack_blocks(tokenizer, read_corpus(valid), seq_len, source=valid)
        valid_blocks_arr = valid_blocks_arr[: max(valid_blocks, batch_size)]
        valid_blocks_arr = valid_blocks_arr[: (len(valid_blocks_arr) // batch_size) * batch_size]
        if len(valid_blocks_arr) == 0:
            raise ValueError(f"{valid}: fewer than one batch ({batch_size}) of validation blocks")

    backup_dir = os.path.join(out_dir, BACKUP_DIR)
    start_interval = AtomicBackupAndRestore.completed_epochs(backup_dir)
    intervals = steps // checkpoint_every
    train_ds = block_dataset(train_blocks, batch_size, seed=seed, start_step=start_interval * checkpoint_every)
    valid_ds = None
    if valid_blocks_arr is not None:
        valid_ds = block_dataset(valid_blocks_arr, batch_size, shuffle=False, repeat=False)

    with strat.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(steps - warmup_steps, 1),
            alpha=0.1,
            warmup_target=lr,
            warmup_steps=warmup_steps,
        )
        optimizer = ReplicaAwareAdamW(
            learning_rate=schedule, weight_decay=weight_decay, global_clipnorm=clip_norm
        )
        model.compile(optimizer=optimizer, jit_compile=jit_compile)
        model({"token_ids": train_blocks[:1, :-1], "padding_mask": np.ones_like(train_blocks[:1, :-1])})

    card = {
        "objective": objective,
        "corpus": os.path.abspath(corpus),
        "corpus_sha256": _sha256(corpus),
        "corpus_tokens": int(train_blocks.size),
        "valid": None if valid is None else os.path.abspath(valid),
        "config": config if init is None else f"init:{init}",
        "untied": model.head is not None,
        "fixed_phi": not model.phi_trainable,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "tokens_seen": steps * batch_size * seq_len,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "seed": seed,
        "num_replicas": strat.num_replicas_in_sync,
        "max_sequence_length": int(max_len or seq_len),
        "tokenizer": tokenizer.name,
        "command": command,
    }

    def make_lm():
        return LanguageModel(model.backbone, tokenizer, head=model.head, name=f"tflm-{objective}")

    fit_callbacks = [
        AtomicBackupAndRestore(backup_dir),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")),
        Throughput(batch_size * seq_len, "tok/s"),
        KeepCheckpoints(os.path.join(out_dir, CHECKPOINT_DIR), make_lm, checkpoint_every, card),
        *(callbacks or []),
    ]
    history = model.fit(
        train_ds,
        epochs=intervals,
        steps_per_epoch=checkpoint_every,
        validation_data=valid_ds,
        validation_steps=None if valid_ds is None else len(valid_blocks_arr) // batch_size,
        callbacks=fit_callbacks,
        verbose=verbose,
    )
    if history.history.get("loss") and not np.isfinite(history.history["loss"][-1]):
        raise FloatingPointError("training diverged (loss is NaN/inf); lower --lr")
    results = {}
    if valid_ds is not None:
        ev = model.evaluate(valid_ds, steps=len(valid_blocks_arr) // batch_size, verbose=0, return_dict=True)
        results = {
            "val_objective": float(ev["loss"]),
            "val_softmax_xent": float(ev["softmax_xent"]),
            "val_perplexity": float(math.exp(ev["softmax_xent"])),
            "val_tokens": int(valid_blocks_arr.size - len(valid_blocks_arr)),
        }
    card.update(results)
    card.update(
        {
            "wall_time_s": round(time.time() - t_start, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.system()}",
            "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        }
    )
    save_preset_dir(make_lm(), os.path.join(out_dir, "model"), weights_dtype=weights_dtype, model_card=card)
    return card
