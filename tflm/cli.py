"""`tflm` command line: thin argument parsing; all logic lives in the library."""

import argparse
import os
import sys

from tflm import native_logs
from tflm.atomic import WriteError


def _csv(kind):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {kind.__name__} values") from None

    return parse


def parse_number_list(text, kind, flag):
    """Numbers (`kind` int or float) from a comma-separated `text`; ValueError naming `flag` and the bad item."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ValueError(f"{flag}: expected a comma-separated list of numbers, got {text!r}")
    out = []
    for t in items:
        try:
            out.append(int(t, 10) if kind is int else float(t))
        except ValueError:
            raise ValueError(f"{flag}: {t!r} is not {'an integer' if kind is int else 'a number'}") from None
    return out


def _add_dtype(s, training=False, default="standard"):
    from tflm.models.language_model import DEFAULT_DTYPE, DTYPES

    if default == "standard":
        default = "float32" if training else DEFAULT_DTYPE
    shown = default or "float32 for the probed models, bfloat16 for the SmolLM2 rows"
    s.add_argument("--dtype", default=default, choices=DTYPES,
                   help=f"compute dtype of the LM (default {shown}); bfloat16/float16 use the Keras mixed "
                   "policy (float32 weights)" + ("" if training else "; f is stored as float32"))


def _add_extraction_strategy(s):
    s.add_argument("--strategy", default="one", choices=["one", "mirrored"],
                   help="tf.distribute strategy for extraction (default one; mirrored splits every batch over the "
                   "local GPUs or logical CPUs; across machines use --num-shards)")
    s.add_argument("--no-packing", action="store_true",
                   help="one text per batch row (length-bucketed) instead of several texts per row; f and the "
                   "feature cache are the same either way")


def _add_shard_options(s):
    _add_extraction_strategy(s)
    s.add_argument("--num-shards", type=int, default=1, help="split the extraction into K shards (default 1)")
    s.add_argument("--shard-index", type=int, default=0, help="the shard this process computes, 0..K-1")


def _strategy(name):
    from tflm.distribute import get_strategy

    return get_strategy(name)


def _quad_pair(text):
    name, _, specs = text.partition("=")
    models = specs.split(",")
    if not name or len(models) != 2 or not all(models):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=QUAD_MODEL,XENT_MODEL")
    return (name, models[0], models[1])


def cmd_info(args):
    from tflm.models import load_lm

    lm = load_lm(args.model)
    for k, v in lm.info().items():
        print(f"{k:24s} {v}")


def cmd_tokenize(args):
    from tflm.models.load_lm import load_tokenizer

    tok = load_tokenizer(args.model)
    for line in sys.stdin:
        text = line.rstrip("\n")
        if args.pieces:
            print(" ".join(tok.pieces(text)))
        else:
            print(" ".join(str(i) for i in tok.encode(text)))


def cmd_pretrain(args):
    from tflm.lm.pretrain import PretrainConfig, pretrain

    card = pretrain(PretrainConfig(
        objective=args.objective,
        corpus=args.corpus,
        out_dir=args.out,
        valid=args.valid,
        config=args.config,
        init=args.init,
        untied=args.untied,
        fix_phi=args.fix_phi,
        init_embeddings=args.init_embeddings,
        init_phi=args.init_phi,
        tokenizer=args.tokenizer,
        whiten=args.whiten,
        f_lin_init=args.f_lin_init,
        mixed_precision=args.mixed_precision,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        checkpoint_every=args.checkpoint_every,
        valid_blocks=args.valid_blocks,
        strategy=args.strategy,
        seed=args.seed,
        jit_compile=not args.no_jit,
        weights_dtype=args.weights_dtype,
        command="tflm " + " ".join(args.argv),
    ))
    for k in ("val_objective", "val_softmax_xent", "val_perplexity", "wall_time_s"):
        if k in card:
            print(f"{k:18s} {card[k]:.4f}")
    print(f"model written to {os.path.join(args.out, 'model')}")


def cmd_finetune(args):
    from tflm.finetune import FinetuneConfig, finetune

    lrs = parse_number_list(args.lrs, float, "--lrs")
    batch_sizes = None if args.batch_sizes is None else parse_number_list(args.batch_sizes, int, "--batch-sizes")
    config = FinetuneConfig(
        args.task, data_dir=args.data, prompt=args.prompt, lrs=lrs, batch_sizes=batch_sizes, epochs=args.epochs,
        out_dir=args.out, seed=args.seed, early_stop=args.early_stop, max_train=args.max_train,
        max_eval=args.max_eval, splits=args.splits, dropout=args.dropout, max_length=args.max_length,
        strip_prompt_space=args.strip_prompt_space, export_dir=args.export, export_raw_text=args.export_raw_text,
        dtype=args.dtype, optimizer=args.optimizer,
        **({} if args.bucket_window is None else {"bucket_window": args.bucket_window}),
    )
    report = finetune(args.model, config, strategy=args.strategy)
    sel = report["selected"]
    print(f"selected {sel['run']} (epoch {sel['best_epoch']}): dev accuracy {sel['dev_accuracy']:.4f}, "
          f"test accuracy {sel['test_accuracy']:.4f}")
    print(f"report: {os.path.join(args.out, 'results.md')}" + (f"; SavedModel: {args.export}" if args.export else ""))


def cmd_features(args):
    from tflm.jobs.features_job import write_features

    meta = write_features(
        args.model, args.task, args.split, args.features, args.out, data_dir=args.data,
        prompt=args.prompt, word_mode=args.word_mode, detokenize=args.detokenize,
        strip_prompt_space=args.strip_prompt_space, cache_dir=args.cache_dir, dtype=args.dtype,
        strategy=_strategy(args.strategy), num_shards=args.num_shards, shard_index=args.shard_index,
        packing=not args.no_packing,
    )
    if meta.get("missing_rows"):
        print(f"shard {args.shard_index}/{args.num_shards}: cached its chunks; {meta['missing_rows']} of "
              f"{meta['n']} rows are other shards'. Rerun without --num-shards on the merged cache to write {args.out}")
        return
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in meta["features"].items())
    print(f"wrote {args.out}: {meta['n']} rows; {shapes}")


def cmd_probe(args):
    from tflm.jobs.probe_job import run_probes

    modes = (False, True) if args.both else ((True,) if args.prompt else (False,))
    run_probes(
        args.model, args.task, args.features, out_dir=args.out, data_dir=args.data, prompt_modes=modes,
        word_mode=args.word_mode, max_train=args.max_train, seed=args.seed, cache_dir=args.cache_dir,
        detokenize=args.detokenize, strip_prompt_space=args.strip_prompt_space, probe_backend=args.probe_backend,
        dtype=args.dtype, strategy=_strategy(args.strategy), packing=not args.no_packing,
    )
    if args.out:
        print(f"wrote {os.path.join(args.out, 'results.json')} and results.md")


def cmd_analyze(args):
    if args.across_lms:
        from tflm.jobs.across_lms import across_lms

        if not args.valid:
            raise ValueError("--across-lms needs --valid FILE (held-out text, one document per line)")
        across_lms(args.across_lms, args.valid, args.out, tasks=args.task.split(","), data_dir=args.data,
                   max_train=args.max_train, max_test=args.max_test, n_docs=args.held_out_docs, seed=args.seed,
                   dtype=args.dtype, command="tflm " + " ".join(args.argv))
        print(f"wrote {os.path.join(args.out, 'across_lms.md')}")
        return
    from tflm.jobs.analyze_job import analyze

    pair = None
    if args.quad_model or args.xent_model:
        if not (args.quad_model and args.xent_model and args.valid):
            raise ValueError("the Q_ref check needs --quad-model, --xent-model and --valid")
        pair = (args.quad_model, args.xent_model)
    analyze(args.model, args.task, args.out, data_dir=args.data, checkpoints=args.checkpoints,
            n_contexts=args.contexts, pca_dims=args.pca_dims, max_train=args.max_train, seed=args.seed,
            dtype=args.dtype, quad_pair=pair, valid=args.valid, valid_blocks=args.valid_blocks)
    print(f"wrote {os.path.join(args.out, 'analysis.md')}")


def _finetune_settings(args):
    """The FT column's grid from --ft-* (None without --finetune)."""
    if not args.finetune:
        return None
    ft = {"epochs": args.ft_epochs}
    if args.dtype:
        ft["dtype"] = args.dtype
    for name in ("lrs", "batch_sizes", "early_stop", "max_train", "tasks"):
        if getattr(args, f"ft_{name}") is not None:
            ft[name] = getattr(args, f"ft_{name}")
    return ft


def cmd_reproduce(args):
    if args.tables:
        from tflm.jobs.tables_job import run_tables

        if not args.model:
            raise ValueError("--tables needs --model SPEC (e.g. --model smollm2)")
        run_tables(args.model, args.tables, out_dir=args.out, data_dir=args.data, max_train=args.max_train,
                   max_test=args.max_test, strip_prompt_space=args.strip_prompt_space,
                   cache_dir=args.cache_dir if args.cache_dir else None, seed=args.seed,
                   command="tflm " + " ".join(args.argv), dtype=args.dtype, probe_backend=args.probe_backend,
                   finetune=_finetune_settings(args))
        return
    from tflm.jobs.reproduce_job import reproduce

    real_lm_kw = {f"real_lm_{k}": (v or None) for k in ("max_train", "max_test")
                     if (v := getattr(args, f"real_lm_{k}")) is not None}
    if args.real_lms:
        real_lm_kw["real_lms"] = args.real_lms

    ft = _finetune_settings(args)
    if ft and "tasks" in ft:
        raise ValueError("--ft-tasks picks Table 1's FT rows: use it with --tables 1 (the main job fine-tunes --tasks)")
    reproduce(model=args.model, quad_model=args.quad_model, quad_pairs=args.quad_pair, quad_tasks=args.quad_tasks,
              tasks=args.tasks, data_dir=args.data,
              out_dir=args.out, features=args.features, max_train=args.max_train, finetune=args.finetune,
              finetune_kwargs=ft, cache_dir=args.cache_dir, strip_prompt_space=args.strip_prompt_space,
              real_lm=not args.no_real_lm, probe_backend=args.probe_backend, dtype=args.dtype, **real_lm_kw)


def _add_probe_backend(s):
    s.add_argument("--probe-backend", choices=["tf", "sklearn"], default="tf",
                   help="logistic probes: tf = batched Newton (fast), sklearn = liblinear, the exact reference")


def _add_prompt_space_options(s):
    g = s.add_mutually_exclusive_group()
    g.add_argument("--strip-prompt-space", dest="strip_prompt_space", action="store_const", const=True,
                   default=None, help="drop the prompt's trailing space (default for non-GPT-2 tokenizers)")
    g.add_argument("--keep-prompt-space", dest="strip_prompt_space", action="store_const", const=False,
                   help="keep the trailing space as the reference does (default for GPT-2 BPE; f then sits on token ' ')")


def _add_feature_options(s):
    s.add_argument("--model", required=True, help="model SPEC")
    s.add_argument("--data", help="data folder holding <task>/{train,dev,test}.tsv (default: shipped data)")
    s.add_argument("--word-mode", default="logits", choices=["logits", "probs", "logprobs"],
                   help="values of word features (default logits, as the paper)")
    s.add_argument("--detokenize", action="store_true", help="undo PTB tokenization (does n't -> doesn't)")
    _add_prompt_space_options(s)
    s.add_argument("--cache-dir", help="feature cache (default $TFLM_CACHE or ~/.cache/tflm/features)")
    _add_dtype(s)


def build_parser():
    p = argparse.ArgumentParser(
        prog="tflm",
        description="Causal language models as features for text classification "
        "(Saunshi, Malladi, Arora, ICLR 2021).",
    )
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's native log lines (oneDNN, CUDA, absl); hidden by default")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("info", help="print a model's architecture, d, V, head, size and tokenizer")
    s.add_argument("model", help="model SPEC (preset name, preset dir, HF dir, .gguf, tiny-gpt2)")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("tokenize", help="token ids (or --pieces) of each stdin line")
    s.add_argument("model", help="model SPEC")
    s.add_argument("--pieces", action="store_true", help="print token strings instead of ids")
    s.set_defaults(func=cmd_tokenize)

    s = sub.add_parser("features", help="write sentence features of a task split to an .npz")
    _add_feature_options(s)
    s.add_argument("--task", required=True, help="task name or a folder of tsv files")
    s.add_argument("--split", default="train", choices=["train", "dev", "test", "all"])
    s.add_argument("--prompt", action="store_true", help="append the task's prompt")
    s.add_argument("--features", type=_csv(str), default=["f", "phi_p"],
                   help="comma-separated: f,phi_p,p,subset,class,posneg,proj")
    s.add_argument("--out", required=True, help="output .npz")
    _add_shard_options(s)
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("probe", help="linear probes on LM features (the paper's Tables 1 and 2)")
    _add_feature_options(s)
    s.add_argument("--task", type=_csv(str), required=True, help="task name(s), comma-separated, or folders")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--prompt", action="store_true", help="only the prompted rows (task*)")
    g.add_argument("--both", action="store_true", help="rows with and without the prompt")
    s.add_argument("--features", type=_csv(str), default=["f", "phi_p", "subset", "class", "posneg", "zeroshot"],
                   help="comma-separated: f,phi_p,p,proj,subset,class,posneg,zeroshot")
    s.add_argument("--max-train", type=int, help="subsample the training set (seeded) to this size")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="directory for results.json and results.md")
    _add_probe_backend(s)
    _add_extraction_strategy(s)
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("reproduce", help="the main job: the paper's tables, Quad vs xent, log-partition check, REPORT.md")
    s.add_argument("--model", help="model SPEC (default: the shipped cross-entropy model)")
    s.add_argument("--quad-model", help="a Quad-trained model to compare (default with the shipped models: the shipped Quad model)")
    s.add_argument("--tasks", type=_csv(str), default=["sst2"])
    s.add_argument("--quad-pair", type=_quad_pair, action="append", metavar="NAME=QUAD,XENT",
                   help="another (Quad model, cross-entropy model) pair for the Quad-vs-xent table (repeatable)")
    s.add_argument("--quad-tasks", type=_csv(str),
                   help="tasks of the Quad-vs-xent table (f probes; default sst2,sst5,cr,mpqa with the shipped "
                        "models, else --tasks)")
    s.add_argument("--data", help="data folder of <task>/{train,dev,test}.tsv (default: $TFLM_DATA_DIR, else the shipped SST-2)")
    s.add_argument("--features", type=_csv(str), default=["f", "phi_p", "subset", "class", "zeroshot"])
    s.add_argument("--max-train", type=int, default=None,
                   help="subsample training sets (seeded); default: all for the shipped models; with --tables: "
                   "every task (default: tflm.jobs.tables_job.SUBSAMPLES)")
    s.add_argument("--finetune", action="store_true",
                   help="add the FT column (tflm finetune grid; with --tables: Table 1's rows, resumable)")
    s.add_argument("--ft-lrs", type=_csv(float))
    s.add_argument("--ft-batch-sizes", type=_csv(int))
    s.add_argument("--ft-epochs", type=int, default=10)
    s.add_argument("--ft-early-stop", type=int, help="FT: stop a run after this many epochs without a better dev accuracy")
    s.add_argument("--ft-tasks", type=_csv(str),
                   help="with --tables 1: fine-tune only these of Table 1's tasks (default all; the others show -)")
    s.add_argument("--ft-max-train", type=int,
                   help="FT: train on a seeded subsample of at most this many examples per row (default: the "
                   "probes' training set; never more than it)")
    s.add_argument("--cache-dir", default="",
                   help="feature cache directory (default: none; with --tables: $TFLM_CACHE or ~/.cache/tflm/features)")
    s.add_argument("--tables", type=_csv(str),
                   help="the paper's tables for --model: comma-separated 1 (sst2, sst5, agnews, all features, "
                   "with/without prompt), 2 (dbpedia, trec, imdb, cr, mpqa: f, phi_p), quad (the shipped "
                   "xent vs Quad pair); resumable")
    s.add_argument("--max-test", type=int, help="with --tables: subsample every test set (seeded) to this size")
    s.add_argument("--no-real-lm", action="store_true",
                   help="without --model: skip the real LMs' rows (each added when installed)")
    s.add_argument("--real-lms", type=_csv(str), default=None,
                   help="without --model: the real LMs whose rows open the report, each added when installed "
                   "(default: smollm2,gemma3)")
    s.add_argument("--real-lm-max-train", type=int,
                   help="real-LM rows: seeded training subsample (default: tflm.jobs.reproduce_job.REAL_LM_MAX_TRAIN; 0: all)")
    s.add_argument("--real-lm-max-test", type=int,
                   help="real-LM rows: seeded test subsample (default: tflm.jobs.reproduce_job.REAL_LM_MAX_TEST; 0: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the subsamples")
    _add_prompt_space_options(s)
    s.add_argument("--out", default="results")
    _add_probe_backend(s)
    _add_dtype(s, default=None)
    s.set_defaults(func=cmd_reproduce)

    s = sub.add_parser("analyze", help="check the paper's assumptions (log-partition, phi_p ~ A f + b, accuracy vs loss)")
    s.add_argument("--model", help="model SPEC for the log-partition and linear-relation checks")
    s.add_argument("--task", default="sst2")
    s.add_argument("--data", help="data folder (default: shipped data)")
    s.add_argument("--checkpoints", type=_csv(str),
                   help="checkpoint dirs of one run (or a checkpoints/ folder) for accuracy vs loss")
    s.add_argument("--across-lms", type=_csv(str), metavar="SPEC,SPEC,...",
                   help="compare these LMs: bits per byte on --valid vs f / phi_p probe accuracy on --task "
                        "(comma-separated tasks)")
    s.add_argument("--max-test", type=int, help="--across-lms: subsample each test set (seeded) to this size")
    s.add_argument("--held-out-docs", type=int, default=200, help="--across-lms: documents of --valid scored")
    s.add_argument("--contexts", type=int, default=8000, help="contexts (token prefixes) for the log Z fit")
    s.add_argument("--pca-dims", type=int, default=32, help="fit log Z on the top-k PCs of f (0: all d dims)")
    s.add_argument("--max-train", type=int, default=2000, help="training sentences for probes (seeded subsample)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quad-model", help="Q_ref check: a Quad model with frozen Phi (with --xent-model and --valid)")
    s.add_argument("--xent-model", help="Q_ref check: the cross-entropy model whose predictions define Q_ref")
    s.add_argument("--valid", help="Q_ref check: validation text, one document per line (as for pretrain)")
    s.add_argument("--valid-blocks", type=int, default=128, help="Q_ref check: validation blocks to use")
    s.add_argument("--out", default="results/analysis")
    _add_dtype(s)
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("pretrain", help="train a causal LM with cross-entropy or Quad")
    s.add_argument("--objective", choices=["xent", "quad"], required=True)
    s.add_argument("--corpus", required=True, help="training text, one document per line")
    s.add_argument("--valid", help="validation text, one document per line")
    s.add_argument("--out", required=True, help="output directory (model/, checkpoints/, logs/, backup/)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--config", default="small", help="tiny | small | gpt2_base | gpt2_medium (default small)")
    g.add_argument("--init", help="start from this model SPEC instead of a random config")
    s.add_argument("--untied", action="store_true", help="paper's untied head: body -> f_lin -> separate Phi")
    s.add_argument("--fix-phi", action="store_true", help="freeze Phi (needs an untied head)")
    s.add_argument("--init-embeddings", help="initialise input embeddings (and untied Phi) from a .npy (V, d) or a model SPEC")
    s.add_argument("--init-phi", help="initialise the untied Phi from a .npy (V, d) or a model SPEC")
    s.add_argument("--tokenizer", help="a model SPEC whose tokenizer a from-scratch body uses (default GPT-2 BPE)")
    s.add_argument("--whiten", action=argparse.BooleanOptionalAction, default=None,
                   help="train f = G^-1/2 g (default: on for Quad with --fix-phi)")
    s.add_argument("--f-lin-init", default="glorot_uniform", help="f_lin kernel initializer of a new head (e.g. zeros)")
    s.add_argument("--mixed-precision", action="store_true", help="train the body under Keras' mixed_bfloat16 policy")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--batch-size", type=int, default=16, help="global batch size (split across replicas)")
    s.add_argument("--seq-len", type=int, default=256)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--warmup-steps", type=int, default=100)
    s.add_argument("--weight-decay", type=float, default=0.01)
    s.add_argument("--clip-norm", type=float, default=1.0)
    s.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (and one at the end)")
    s.add_argument("--valid-blocks", type=int, default=64, help="validation blocks (of --seq-len tokens) to evaluate")
    s.add_argument("--strategy", default="auto", choices=["auto", "mirrored", "multiworker", "one"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-jit", action="store_true", help="disable XLA compilation")
    s.add_argument("--weights-dtype", default="float32", choices=["float32", "float16"])
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("finetune", help="fine-tune the LM with a linear head over the paper's grid; select by dev accuracy")
    s.add_argument("--model", required=True, help="model SPEC")
    s.add_argument("--task", required=True, help="task name or a folder of tsv files")
    s.add_argument("--data", help="data folder holding <task>/{train,dev,test}.tsv (default: shipped data)")
    s.add_argument("--prompt", action="store_true", help="append the task's prompt (the paper's * rows)")
    s.add_argument("--lrs", default="5e-5,1e-4,3e-4", help="comma-separated learning rates (default 5e-5,1e-4,3e-4)")
    s.add_argument("--batch-sizes", help="comma-separated GLOBAL batch sizes, split across replicas "
                   "(default 8,16,32; agnews 8,12,16)")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--strategy", default="auto", help="auto | mirrored | multiworker | one (default auto)")
    s.add_argument("--out", default="finetune_out", help="output folder; rerun with the same folder to resume")
    s.add_argument("--max-train", type=int, help="use a seeded subset of at most N training examples")
    s.add_argument("--max-eval", type=int, help="use seeded subsets of at most N dev and N test examples")
    s.add_argument("--early-stop", type=int, metavar="PATIENCE", help="stop a run after PATIENCE epochs without a better dev accuracy")
    s.add_argument("--export", metavar="DIR", help="export the selected model as a TF SavedModel to DIR")
    s.add_argument("--export-raw-text", action="store_true",
                   help="also add a serve_text endpoint taking raw strings (GPT-2 BPE only; needs tensorflow_text to load)")
    s.add_argument("--splits", default="paper", choices=["paper", "files"],
                   help="paper: SST test halves as dev/test, AG News train 90/10; files: the task's files")
    s.add_argument("--dropout", type=float, default=0.1, help="dropout before the linear head (default 0.1)")
    s.add_argument("--max-length", type=int, help="token limit of text + prompt (default: the model's context)")
    s.add_argument("--bucket-window", type=int, default=None,
                   help="training batches are length-sorted within windows of this many batches of each epoch's "
                   "seeded permutation, then shuffled (default 50; 0: unsorted random batches)")
    s.add_argument("--strip-prompt-space", action="store_true", help="drop the prompt's trailing space")
    s.add_argument("--seed", type=int, default=0)
    from tflm.finetune.config import OPTIMIZERS

    s.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                   help="adam: Keras' Adam (default); fused_adam: TensorFlow's fused Adam kernel (faster on CPUs; "
                   "dense Adam on the token embedding, as torch)")
    _add_dtype(s, training=True)
    s.set_defaults(func=cmd_finetune)

    for s in sub.choices.values():  # `--verbose` also after the command name
        s.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    """The `tflm` command. Called with `argv` (in-process, e.g. from tests) it leaves the caller's fd 2 alone."""
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before the parser is built: building it may import TensorFlow (e.g. --dtype's choices).
    native_logs.configure(verbose="--verbose" in argv, filter_stderr=command_line)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ConnectionError, FloatingPointError, WriteError) as e:
        print(f"tflm {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
