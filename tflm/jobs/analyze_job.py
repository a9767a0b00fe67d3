"""`tflm analyze`: the paper's assumption checks on a model and a task."""

import glob
import json
import os
import time

import numpy as np

from tflm.analysis.accuracy_vs_loss import plot_accuracy_vs_loss
from tflm.analysis.linear_relation import linear_relation_report
from tflm.analysis.quad_reference import quad_reference
from tflm.analysis.log_partition import (
    collect_log_partition,
    evaluate_quadratic_fit,
    fit_gaussian_log_partition,
    fit_quadratic_log_partition,
    plot_log_partition_fit,
)
from tflm.features import SentenceFeatures
from tflm.features.extract import default_cache_dir
from tflm.tasks.splits import load_texts, resolve_task, split_name, subsample
from tflm.models.load_lm import resolve_lm
from tflm.probes import logistic_probe
from tflm.atomic import write_atomic
from tflm.report import fmt, markdown_table, write_json


def _pca(x_train, k):
    mean = x_train.mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    return mean, vt[:k]


def log_partition_check(lm, texts, out_png, n_contexts=8000, pca_dims=32, test_fraction=0.25,
                        ridge=1e-6, seed=0, sf=None):
    """Fit log Z_f ~ 1/2 f^T A f + b^T f + c on contexts (every prefix of `texts`).

    f is first projected on its top `pca_dims` principal components (fit on
    the train part; 0 keeps all d dims, which needs more contexts than
    d(d+1)/2 + d + 1). The Gaussian heuristic (A = covariance of the word
    embeddings, b and c fit) uses the full f. Writes a PNG of fitted vs true
    log Z with y = x; returns the numbers.
    """
    sf = sf or SentenceFeatures(lm, progress=False)
    # enough texts for about 3x the contexts needed (contexts are sampled from all positions)
    lengths = np.cumsum([len(x) for x in lm.tokenizer.encode_batch(list(texts))])
    texts = list(texts)[: int(np.searchsorted(lengths, 3 * n_contexts)) + 1]
    f = sf.context_f(texts, max_contexts=n_contexts, seed=seed)
    phi = np.asarray(lm.output_embeddings())
    f, logz = collect_log_partition(f, phi, dtype="float32")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(f))
    n_test = int(round(test_fraction * len(f)))
    te, tr = perm[:n_test], perm[n_test:]
    pca_dims = min(pca_dims, f.shape[1]) if pca_dims else 0
    if pca_dims:
        mean, comps = _pca(f[tr], pca_dims)
        fx = (f - mean) @ comps.T
    else:
        fx = f
    quad = fit_quadratic_log_partition(fx[tr], logz[tr], ridge=ridge)
    q_eval = evaluate_quadratic_fit(quad, fx[te], logz[te])
    gauss = fit_gaussian_log_partition(phi, f[tr], logz[tr])
    g_eval = evaluate_quadratic_fit(gauss, f[te], logz[te])
    plot_log_partition_fit(
        out_png, logz[te],
        {f"quadratic fit{f' (top {pca_dims} PCs of f)' if pca_dims else ''}": quad.predict(fx[te]),
         "Gaussian heuristic (A = Cov(phi))": gauss.predict(f[te])},
        title=f"log-partition vs quadratic fit: {lm.name}\n({len(te)} held-out contexts)",
    )
    return {
        "contexts": int(len(f)), "train_contexts": int(len(tr)), "test_contexts": int(len(te)),
        "pca_dims": pca_dims or lm.hidden_dim, "quadratic_params": quad.n_params,
        "quadratic_r2": q_eval["r2"], "quadratic_rel_error": q_eval["mean_relative_error"],
        "gaussian_r2": g_eval["r2"], "gaussian_rel_error": g_eval["mean_relative_error"],
        "logz_mean": float(logz.mean()), "logz_std": float(logz.std()), "plot": out_png,
    }


def linear_relation_check(sf, f_tr, y_tr, f_te, y_te, task=None):
    """phi_p ~ A f + b (fit on train sentences), and probes on f vs phi_p vs A f + b."""
    phi_p = sf.derive(np.concatenate([f_tr, f_te]), ["phi_p"])["phi_p"]
    f_all = np.concatenate([f_tr, f_te])
    rep = linear_relation_report(f_all, phi_p, train_idx=np.arange(len(f_tr)))
    out = {"train_relative_error": rep["train_relative_error"], "test_relative_error": rep["test_relative_error"]}
    n = len(f_tr)
    for name, x in (("f", f_all), ("phi_p", phi_p), ("A_f_plus_b", rep["predicted"])):
        res = logistic_probe(x[:n], y_tr, x[n:], y_te)
        out[f"probe_{name}"] = res["test_accuracy"]
    return out


def _checkpoint_name(path):
    """`run/step_N` for checkpoints kept by `tflm pretrain`, else the folder name."""
    path = os.path.normpath(path)
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "checkpoints":
        return f"{os.path.basename(os.path.dirname(parent))}/{os.path.basename(path)}"
    return os.path.basename(path)


def accuracy_vs_loss(checkpoints, task, out_png, data_dir=None, max_train=2000, seed=0, log=print, dtype=None):
    """Probe accuracy of f against validation cross-entropy over checkpoints of one run."""
    records = []
    tr, y_tr, _ = load_texts(task, "train", data_dir)
    te, y_te, _ = load_texts(task, "test", data_dir)
    tr, y_tr, _ = subsample(tr, y_tr, max_train, seed)
    for path in checkpoints:
        lm = resolve_lm(path, dtype)
        card_path = os.path.join(path, "model_card.json")
        card = json.load(open(card_path)) if os.path.isfile(card_path) else {}
        if "val_softmax_xent" not in card:
            raise ValueError(f"{path}: model_card.json has no val_softmax_xent (train with --valid)")
        sf = SentenceFeatures(lm, progress=False)
        acc = logistic_probe(sf.f(tr), y_tr, sf.f(te), y_te)["test_accuracy"]
        arch = {"architecture": lm.architecture, "layers": int(lm.backbone.num_layers), "d": lm.hidden_dim,
                "V": lm.vocabulary_size, "tied": lm.tied}
        records.append({"name": _checkpoint_name(path), "architecture": arch,
                        "val_xent": card["val_softmax_xent"], "probe_accuracy": acc, "step": card.get("step")})
        log(f"  {records[-1]['name']}: val xent {card['val_softmax_xent']:.3f}, f probe {100 * acc:.1f}%")
    plot = plot_accuracy_vs_loss(records, out_png, title=f"{task.name} probe accuracy of f vs LM validation loss")
    return {"records": records, "reference_curve": plot["reference_curve"], "caption": plot["caption"], "plot": out_png}


def model_card(spec):
    """The `model_card.json` of a model directory as a dict ({} for anything else)."""
    path = os.path.join(spec, "model_card.json") if isinstance(spec, str) and os.path.isdir(spec) else None
    if path is None or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def quad_reference_check(quad_model, xent_model, valid, seq_len=None, valid_blocks=128, log=print):
    """Q_ref of a (Quad model, cross-entropy model) pair next to the Quad model's objective.

    `valid` is a text file (one document per line), packed into blocks as
    `tflm pretrain` packs its validation set (the first `valid_blocks` blocks
    of `seq_len` + 1 tokens; `seq_len` defaults to the Quad model's card).
    """
    from tflm.lm.corpus import pack_blocks, read_corpus

    card = model_card(quad_model)
    quad_lm, xent_lm = resolve_lm(quad_model), resolve_lm(xent_model)
    seq_len = int(seq_len or card.get("seq_len") or min(quad_lm.max_sequence_length, 256))
    blocks = pack_blocks(quad_lm.tokenizer, read_corpus(valid), seq_len, source=valid)[:valid_blocks]
    log(f"Q_ref: {quad_lm.name} vs {xent_lm.name} on {len(blocks)} blocks of {seq_len} tokens of {valid}")
    out = quad_reference(quad_lm, xent_lm, blocks)
    out.update({"quad_model": quad_lm.name, "xent_model": xent_lm.name, "valid": os.path.basename(valid),
                "seq_len": seq_len, "blocks": int(len(blocks))})
    if card.get("val_objective") is not None:
        out["card_val_objective"] = float(card["val_objective"])
    return out


def analyze(model, task, out_dir, data_dir=None, checkpoints=None, n_contexts=8000, pca_dims=32,
            max_train=2000, seed=0, quad_pair=None, valid=None, valid_blocks=128, log=print, dtype=None):
    """All assumption checks for `model` on `task`; writes analysis.json/.md and PNGs.

    `quad_pair` = (Quad model, cross-entropy model) with a validation text
    file `valid` adds the Q_ref check (`quad_reference_check`). `dtype`: compute
    dtype of the LMs (default float32 for specs).
    """
    t0 = time.time()
    task = resolve_task(task)
    os.makedirs(out_dir, exist_ok=True)
    result = {"task": task.name}
    if quad_pair is not None:
        if valid is None:
            raise ValueError("the Q_ref check needs a validation text file (valid)")
        result["quad_reference"] = quad_reference_check(*quad_pair, valid=valid, valid_blocks=valid_blocks, log=log)
    if model is not None:
        lm = resolve_lm(model, dtype)
        result["model"] = lm.name
        result["dtype"] = lm.dtype
        sf = SentenceFeatures(lm, progress=False, cache_dir=default_cache_dir())
        tr, y_tr, _ = load_texts(task, "train", data_dir)
        te, y_te, _ = load_texts(task, "test", data_dir)
        tr, y_tr, sub = subsample(tr, y_tr, max_train, seed)
        log(f"log-partition check on contexts of {task.name} train ({lm.name})")
        result["log_partition"] = log_partition_check(
            lm, tr, os.path.join(out_dir, "log_partition.png"), n_contexts, pca_dims, seed=seed, sf=sf)
        log("linear relation phi_p ~ A f + b")
        # same cache identities as `tflm probe`, so features it computed are reused
        train_id = {"task": task.name, "split": split_name("train", sub, len(tr)),
                    "detokenize": False}
        f_tr = sf.f(tr, identity=train_id)
        f_te = sf.f(te, identity={"task": task.name, "split": "test", "detokenize": False})
        result["linear_relation"] = linear_relation_check(sf, f_tr, y_tr, f_te, y_te)
    if checkpoints:
        paths = []
        for c in checkpoints:
            paths += sorted(glob.glob(os.path.join(c, "step_*"))) if os.path.isdir(c) and not os.path.isfile(
                os.path.join(c, "config.json")) else [c]
        log(f"accuracy vs loss over {len(paths)} checkpoints")
        result["accuracy_vs_loss"] = accuracy_vs_loss(paths, task, os.path.join(out_dir, "accuracy_vs_loss.png"),
                                                      data_dir, max_train, seed, log, dtype)
    result["wall_time_s"] = round(time.time() - t0, 1)
    write_json(os.path.join(out_dir, "analysis.json"), result)
    write_atomic(os.path.join(out_dir, "analysis.md"), analysis_markdown(result))
    log(analysis_markdown(result))
    return result


def analysis_markdown(result):
    who = f"{result['model']} on " if result.get("model") else ""
    lines = [f"# Assumption checks: {who}{result['task']}", ""]
    qr = result.get("quad_reference")
    if qr:
        lines += ["## Quad objective vs Q_ref", "",
                  markdown_table(["quantity", "value"], [
                      [f"Quad objective of {qr['quad_model']}", f"{qr['q_model']:.5f}"],
                      [f"Q_ref (f_hat = G^-1 Phi p_xent, p_xent from {qr['xent_model']})", f"{qr['q_ref']:.5f}"],
                      ["-1/2 E (Phi p_xent)^T G^-1 (Phi p_xent)", f"{qr['q_ref_analytic']:.5f}"],
                      ["objective / Q_ref", f"{qr['ratio']:.3f}"],
                      [f"cross-entropy of {qr['xent_model']}", f"{qr['xent_softmax_xent']:.4f}"],
                      ["condition number of G = Phi Phi^T", f"{qr['gram_condition_number']:.3g}"]]),
                  "", f"{qr['positions']} next-token positions ({qr['blocks']} blocks of {qr['seq_len']} tokens of "
                  f"{qr['valid']}). f = 0 scores 0; the Quad optimum is -1/2 E (Phi p*)^T G^-1 (Phi p*).", ""]
    lp = result.get("log_partition")
    if lp:
        lines += ["## Quadratic log-partition", "",
                  markdown_table(["fit", "held-out R^2", "mean relative error", "params"], [
                      [f"quadratic on top {lp['pca_dims']} PCs of f", f"{lp['quadratic_r2']:.4f}",
                       f"{lp['quadratic_rel_error']:.4f}", lp["quadratic_params"]],
                      ["Gaussian heuristic A = Cov(phi)", f"{lp['gaussian_r2']:.4f}", f"{lp['gaussian_rel_error']:.4f}",
                       "d + 1"]]),
                  "", f"{lp['train_contexts']} train / {lp['test_contexts']} held-out contexts (token prefixes). "
                  f"![log Z fit]({os.path.basename(lp['plot'])})", ""]
    lr = result.get("linear_relation")
    if lr:
        lines += ["## Linear relation phi_p ~ A f + b", "",
                  f"Held-out relative error {lr['test_relative_error']:.4f} (train {lr['train_relative_error']:.4f}).", "",
                  markdown_table(["probe on", "test accuracy (%)"],
                                 [["f", fmt(lr["probe_f"])], ["phi_p", fmt(lr["probe_phi_p"])],
                                  ["A f + b", fmt(lr["probe_A_f_plus_b"])]]), ""]
    al = result.get("accuracy_vs_loss")
    if al:
        lines += ["## Accuracy vs language-model loss", "",
                  markdown_table(["checkpoint", "val cross-entropy", "f probe accuracy (%)"],
                                 [[r["name"], f"{r['val_xent']:.3f}", fmt(r["probe_accuracy"])] for r in al["records"]]),
                  "", al["caption"], f"![accuracy vs loss]({os.path.basename(al['plot'])})", ""]
    return "\n".join(lines)
