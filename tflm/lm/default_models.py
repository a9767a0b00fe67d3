"""The recipe of the default models shipped in `saved_models/`."""

import json
import os
import shutil

from tflm.lm.pretrain import pretrain

COMMON = dict(config="small", steps=800, batch_size=16, seq_len=256, lr=2e-3, warmup_steps=100,
              checkpoint_every=200, valid_blocks=128, seed=0)
DEFAULT_MODELS = {
    "xent": dict(objective="xent", untied=False, **COMMON),
    "quad": dict(objective="quad", untied=True, **COMMON),
}
SHIPPED_NAMES = {"xent": "imdb-gpt2-small-xent", "quad": "imdb-gpt2-small-quad"}


def train_default_model(name, corpus_dir, work_dir, out_dir, command=None):
    """Train one default model and copy it (float16) to `out_dir/<shipped name>`."""
    recipe = DEFAULT_MODELS[name]
    run_dir = os.path.join(work_dir, name)
    card = pretrain(
        corpus=os.path.join(corpus_dir, "train.txt"),
        valid=os.path.join(corpus_dir, "valid.txt"),
        out_dir=run_dir,
        weights_dtype="float16",
        command=command,
        **recipe,
    )
    target = os.path.join(out_dir, SHIPPED_NAMES[name])
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(os.path.join(run_dir, "model"), tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    print(json.dumps({k: v for k, v in card.items() if k != "history"}, indent=1))
    return card
