"""The recipe of the default models shipped in `saved_models/`.

Two stages for the cross-entropy model (800 steps from scratch, then 800 more steps from
that model at a lower peak learning rate), and the paper's Quad setup for the Quad model:
untied head (body -> f_lin -> Phi) with Phi and the input embeddings initialised from the
(final) cross-entropy model and Phi frozen ("fixed Phi", as the paper's code does with
pretrained GPT-2 embeddings), stored with unit Frobenius norm (Quad's gauge, see
`PretrainConfig`); the body is trained from scratch, with the whitened parameterisation
f = G^-1/2 g (`UntiedHead(whiten=True)`) and f_lin initialised at zero.
All on ../shared/data/corpus/imdb_unsup with the GPT-2 BPE.
"""

import json
import os

from tflm.atomic import copy_atomic
from tflm.report import write_json

from tflm.lm.pretrain import pretrain

COMMON = dict(steps=800, batch_size=16, seq_len=256, warmup_steps=100, checkpoint_every=200,
              valid_blocks=128, seed=0)
# name -> (pretrain arguments, the stage it starts from or None)
STAGES = {
    "xent_stage1": (dict(objective="xent", config="small", lr=2e-3, **COMMON), None),
    "xent": (dict(objective="xent", lr=1e-3, **COMMON), "xent_stage1"),
    "quad": (dict(objective="quad", config="small", untied=True, fix_phi=True, whiten=True, f_lin_init="zeros",
                  lr=2e-3, **COMMON), "xent"),
}
DEFAULT_MODELS = ("xent", "quad")
SHIPPED_NAMES = {"xent": "imdb-gpt2-small-xent", "quad": "imdb-gpt2-small-quad"}


def train_stage(name, corpus_dir, work_dir, command=None, shipped_dir=None):
    """Train one stage (and the stage it starts from, if not yet trained).

    A parent that is a shipped default model is taken from `shipped_dir` when
    it is there and not trained in `work_dir`.
    """
    args, parent = STAGES[name]
    args = dict(args)
    if parent is not None:
        parent_model = os.path.join(work_dir, parent, "model")
        shipped = None if shipped_dir is None or parent not in SHIPPED_NAMES else os.path.join(shipped_dir, SHIPPED_NAMES[parent])
        if not os.path.isdir(parent_model) and shipped is not None and os.path.isdir(shipped):
            parent_model = shipped
        elif not os.path.isdir(parent_model):
            train_stage(parent, corpus_dir, work_dir, command, shipped_dir)
        if name == "quad":
            args["init_embeddings"] = parent_model  # input embeddings and (frozen) Phi
        else:
            args["init"] = parent_model
            args.pop("config", None)
    return pretrain(
        corpus=os.path.join(corpus_dir, "train.txt"),
        valid=os.path.join(corpus_dir, "valid.txt"),
        out_dir=os.path.join(work_dir, name),
        weights_dtype="float16",
        command=command,
        **args,
    )


def train_default_model(name, corpus_dir, work_dir, out_dir, command=None):
    """Train one default model and copy it (float16) to `out_dir/<shipped name>`."""
    card = train_stage(name, corpus_dir, work_dir, command, shipped_dir=out_dir)
    target = os.path.join(out_dir, SHIPPED_NAMES[name])
    copy_atomic(os.path.join(work_dir, name, "model"), target)
    print(json.dumps({k: v for k, v in card.items() if k != "history"}, indent=1))
    return card


def add_to_card(model_dir, fields):
    """Merge evaluation results (e.g. Q_ref, probe accuracies, notes) into `model_dir/model_card.json`."""
    path = os.path.join(model_dir, "model_card.json")
    with open(path, encoding="utf-8") as f:
        card = json.load(f)
    card.update(fields)
    write_json(path, card)
    return card
