"""Train the two default models shipped in saved_models/ (the exact command used).

    python scripts/train_default_models.py            # both, ~1 hour on 2 CPU cores
    python scripts/train_default_models.py --only xent

Each is a 4-layer, d=128 GPT-2 (full 50,257-token GPT-2 BPE vocabulary) trained on
the real unlabeled IMDb reviews of ../shared/data/corpus/imdb_unsup. `xent` is a
standard tied GPT-2 trained with cross-entropy; `quad` is the paper's untied model
(body -> f_lin -> Phi) trained with the Quad objective against the xent model's
embeddings as a frozen Phi, in the whitened parameterisation f = G^-1/2 g (it starts
from the shipped xent model when `--out` holds one). Weights are stored in float16 to
keep the repository lean; training checkpoints stay in --work.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm.lm.default_models import DEFAULT_MODELS, train_default_model  # noqa: E402


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", default=os.path.join(here, "..", "..", "shared", "data", "corpus", "imdb_unsup"))
    p.add_argument("--work", default=os.path.join(here, "..", "runs", "default_models"))
    p.add_argument("--out", default=os.path.join(here, "..", "saved_models"))
    p.add_argument("--only", choices=DEFAULT_MODELS, action="append")
    args = p.parse_args(argv)
    for name in args.only or ["xent", "quad"]:
        train_default_model(name, args.corpus_dir, args.work, args.out, command=" ".join(sys.argv))


if __name__ == "__main__":
    main()
