"""A streaming softmax-regression probe (Keras) for features too wide to store, e.g. the full p_f.

The probe's model takes f (N, d) as input. Its first, non-trainable layer
(`NextWordDistribution`) computes p_f = softmax(f Phi^T) (V = 50257 for
GPT-2) batch by batch inside the graph, and a Dense(k) layer with an L2
penalty on its kernel (the bias is not penalised) gives the class logits. It
is trained with ``model.fit`` (Adam, cosine-decayed learning rate) on a
``tf.data`` pipeline of f rows, so no N x V array ever exists: memory is
``batch_size x V`` activations plus the V x k weights.

Choosing the L2 strength, at the cost of ONE training run
---------------------------------------------------------
The rows are split into `n_folds` stratified folds. One training run fits
``(n_folds + 1) x len(l2_grid)`` independent heads side by side on the same
p batches: head (j, g) is trained with strength ``l2_grid[g]`` on every row
outside fold j (its loss masks fold j out), and head (all, g) on every row.
The heads share no parameters and Adam updates each parameter from its own
gradient only, so each head follows exactly the run it would follow alone;
the expensive part (f Phi^T and its softmax) is computed once per batch for
all of them. The chosen strength maximises the mean held-out accuracy over
the folds (ties: the larger l2, i.e. the stronger penalty, as scikit-learn
picks the smallest C on ties); the final model is the (all, chosen) head,
i.e. the refit on all training rows. With a fixed ``l2=`` there is a single
head and no folds.

Objective and the mapping to scikit-learn
-----------------------------------------
Each head minimises ``J(W, b) = mean_i CE(softmax(x_i W + b), y_i) + l2 *
||W||_F^2`` over its rows (the mean over rows; a mini-batch loss is an
unbiased estimate of it). scikit-learn's multinomial LogisticRegression
(lbfgs) minimises ``0.5 * ||W||_F^2 + C * sum_i CE_i`` with an unpenalised
intercept. Dividing by ``C N``: the minimisers coincide when

- k > 2 classes (multinomial): ``C = 1 / (2 N l2)``, ``l2 = 1 / (2 N C)``;
- k = 2: this probe uses a two-column softmax, while scikit-learn fits one
  binomial vector ``w = w_1 - w_0`` with penalty ``0.5 ||w||^2``. At the
  optimum ``w_1 = -w_0 = w / 2``, so ``l2 ||W||^2 = l2 ||w||^2 / 2`` and
  ``C = 1 / (N l2)``, ``l2 = 1 / (N C)``.

`sklearn_C` / `l2_for_C` implement this. N is the number of rows a head is
trained on, so a fixed l2 corresponds to a slightly smaller C for the fold
heads than for the refit (the CV selects l2 per example, not C).

Inputs other than p: pass ``feature_layer`` (any Keras layer mapping an f
batch to features inside the graph), or ``feature_fn`` (a Python callable on
numpy f rows, e.g. ``lambda fb: sentence_features.derive(fb, ['phi_p'])
['phi_p']``; streamed through ``tf.data.Dataset.from_generator``), or
nothing (softmax regression on f itself).
"""

import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from sklearn.base import BaseEstimator, ClassifierMixin

from tflm.models.output_embeddings import next_word_distribution
from tflm.probes.logistic_probe import _check_xy

DEFAULT_L2_GRID = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
_NO_FOLD = -2  # held-out fold id of the heads trained on all rows


def sklearn_C(l2, n_samples, n_classes):
    """scikit-learn's C with the same minimiser as this probe's ``l2`` (see module doc)."""
    if l2 <= 0:
        return float("inf")
    return 1.0 / ((1.0 if n_classes == 2 else 2.0) * n_samples * l2)


def l2_for_C(C, n_samples, n_classes):
    """Inverse of `sklearn_C`."""
    return 1.0 / ((1.0 if n_classes == 2 else 2.0) * n_samples * C)


@keras.saving.register_keras_serializable(package="tflm")
class NextWordDistribution(keras.layers.Layer):
    """Non-trainable ``f (B, d) -> softmax(f Phi^T) (B, V)``, with Phi (V, d) held as a weight.

    Build it from an output-embedding matrix with ``NextWordDistribution.from_phi(phi)``.
    """

    def __init__(self, vocabulary_size, hidden_dim, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.phi = self.add_weight(shape=(self.vocabulary_size, self.hidden_dim), initializer="zeros",
                                   trainable=False, name="phi")
        self.built = True

    @classmethod
    def from_phi(cls, phi, **kwargs):
        phi = np.asarray(keras.ops.convert_to_numpy(phi), dtype=np.float32)
        if phi.ndim != 2:
            raise ValueError(f"phi must be (V, d), got shape {phi.shape}")
        layer = cls(phi.shape[0], phi.shape[1], **kwargs)
        layer.phi.assign(phi)
        return layer

    def call(self, f):
        return next_word_distribution(ops.cast(f, self.phi.dtype), self.phi)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim})
        return config


class _PerHeadL2(keras.regularizers.Regularizer):
    """sum_h l2_h * ||W_h||^2 for a (D, H * k) kernel whose column c belongs to head c // k."""

    def __init__(self, l2_per_column):
        self.l2_per_column = np.asarray(l2_per_column, dtype=np.float32)

    def __call__(self, x):
        return ops.sum(ops.square(x) * ops.convert_to_tensor(self.l2_per_column)[None, :])

    def get_config(self):
        return {"l2_per_column": self.l2_per_column.tolist()}


class _MultiHeadDense(keras.layers.Layer):
    """H independent Dense(k) heads as one (D, H * k) matmul; output (B, H, k)."""

    def __init__(self, n_heads, n_classes, l2_per_head, **kwargs):
        super().__init__(**kwargs)
        self.n_heads, self.n_classes = int(n_heads), int(n_classes)
        self.l2_per_column = np.repeat(np.asarray(l2_per_head, dtype=np.float32), self.n_classes)

    def build(self, input_shape):
        width = self.n_heads * self.n_classes
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), width), initializer="zeros",
                                      regularizer=_PerHeadL2(self.l2_per_column), name="kernel")
        self.bias = self.add_weight(shape=(width,), initializer="zeros", name="bias")

    def call(self, x):
        z = ops.matmul(x, self.kernel) + self.bias
        return ops.reshape(z, (-1, self.n_heads, self.n_classes))


class _CVTrainer(keras.Model):
    """Features -> all heads; the loss of head h masks out the rows of its held-out fold."""

    def __init__(self, feature_layer, heads, head_fold, **kwargs):
        super().__init__(**kwargs)
        self.feature_layer = feature_layer
        self.heads = heads
        self.head_fold = np.asarray(head_fold, dtype=np.int32)

    def call(self, x):
        if self.feature_layer is not None:
            x = self.feature_layer(x)
        return self.heads(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = ops.cast(y[:, 0], "int32")
        fold = ops.cast(y[:, 1], "int32")
        n_heads = self.head_fold.shape[0]
        ce = ops.sparse_categorical_crossentropy(
            ops.repeat(labels[:, None], n_heads, axis=1), y_pred, from_logits=True)  # (B, H)
        mask = ops.cast(ops.not_equal(fold[:, None], ops.convert_to_tensor(self.head_fold)[None, :]), ce.dtype)
        per_head = ops.sum(ce * mask, axis=0) / ops.maximum(ops.sum(mask, axis=0), 1.0)
        loss = ops.sum(per_head)
        for extra in self.losses:
            loss = loss + ops.sum(extra)
        return loss


def _check_fy(f, y, what):
    """(f, y) validated like the logistic probe's inputs; y may be None (prediction)."""
    if y is not None:
        return _check_xy(f, y, what)
    f = np.asarray(f)
    if f.ndim != 2:
        raise ValueError(f"{what} f must be a 2-D array (n, d), got shape {f.shape}")
    return f, None


class SoftmaxProbe(ClassifierMixin, BaseEstimator):
    """Streaming softmax regression on features derived from f, with L2 chosen by K-fold CV.

    A scikit-learn estimator (``clone``, ``get_params`` work).

    Args:
        phi: (V, d) output embedding; the features are p_f = softmax(f Phi^T).
        feature_layer: instead of phi, a Keras layer mapping f batches to features.
        feature_fn: instead, a numpy callable f batch -> feature batch.
            (None of the three: the features are f itself.)
        l2: a fixed L2 strength (no CV), or None to choose from `l2_grid`.
        l2_grid: candidate strengths (see the module doc for the objective).
        n_folds: stratified folds for the CV (>= 2).
        epochs, batch_size, learning_rate: Adam with a cosine decay of the
            learning rate to 0 over all steps. The defaults (20, 256, 0.05)
            reach the optimum of the objective closely for l2 >= 1e-5 on
            SST-2-sized problems; weaker penalties stop short of it (the
            finite budget then acts as extra regularisation): raise `epochs`
            for a tighter fit.
        seed: fold assignment and shuffling.
        jit_compile: passed to ``Model.compile``.
        verbose: ``model.fit`` verbosity.

    Fitted attributes: ``model`` (Keras: f -> class logits; its last layer
    is a Dense(k) with ``kernel_regularizer=L2(l2_)``), ``l2_``,
    ``cv_accuracy_`` (mean held-out accuracy per grid value, grid order),
    ``classes_``, ``coef_`` (k, D), ``intercept_`` (k,), ``n_features_``,
    ``history_``, ``fit_seconds_``. Predictions are ``classes_[argmax(x @
    coef_.T + intercept_)]`` with x the derived features.
    """

    def __init__(self, phi=None, feature_layer=None, feature_fn=None, l2=None, l2_grid=DEFAULT_L2_GRID,
                 n_folds=3, epochs=20, batch_size=256, learning_rate=0.05, seed=0, jit_compile="auto",
                 verbose=0):
        self.phi = phi
        self.feature_layer = feature_layer
        self.feature_fn = feature_fn
        self.l2 = l2
        self.l2_grid = l2_grid
        self.n_folds = n_folds
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.jit_compile = jit_compile
        self.verbose = verbose
        self._check_params()

    def _check_params(self):
        """Validate the settings; sets the derived grid_ and in-graph feature layer."""
        given = [x is not None for x in (self.phi, self.feature_layer, self.feature_fn)]
        if sum(given) > 1:
            raise ValueError("pass at most one of phi, feature_layer, feature_fn")
        if self.feature_fn is not None and not callable(self.feature_fn):
            raise TypeError("feature_fn must be callable")
        if self.l2 is None:
            grid = sorted({float(v) for v in self.l2_grid}, reverse=True)  # strongest first
            if not grid or min(grid) < 0:
                raise ValueError(f"l2_grid must hold values >= 0, got {self.l2_grid!r}")
            if int(self.n_folds) < 2:
                raise ValueError(f"n_folds must be >= 2 to choose l2, got {self.n_folds}")
        else:
            if float(self.l2) < 0:
                raise ValueError(f"l2 must be >= 0, got {self.l2}")
            grid = [float(self.l2)]
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        self.grid_ = grid
        if self.phi is not None:
            if getattr(self, "_phi_layer_of", None) is not self.phi:
                self._phi_layer = NextWordDistribution.from_phi(self.phi, name="next_word_distribution")
                self._phi_layer_of = self.phi
            self.feature_layer_ = self._phi_layer
        else:
            self.feature_layer_ = self.feature_layer

    @classmethod
    def from_sentence_features(cls, sentence_features, name="p", **kwargs):
        """A probe on one feature of a `tflm.features.SentenceFeatures` (p: in-graph from Phi)."""
        if name == "p":
            return cls(phi=sentence_features.extractor.phi, **kwargs)
        if name == "f":
            return cls(**kwargs)
        return cls(feature_fn=lambda fb: sentence_features.derive(fb, [name])[name], **kwargs)

    # --- data ------------------------------------------------------------------
    def _feature_dim(self, f):
        if self.feature_fn is not None:
            return int(np.asarray(self.feature_fn(f[:1])).shape[-1])
        if self.feature_layer_ is not None:
            return int(self.feature_layer_.compute_output_shape((1, f.shape[1]))[-1])
        return int(f.shape[1])

    def _dataset(self, f, targets=None, shuffle=False):
        """Batches of (x, targets); x is f, or feature_fn(f rows) for the numpy path."""
        n, bs = len(f), int(self.batch_size)
        if self.feature_fn is None:
            data = (f,) if targets is None else (f, targets)
            ds = tf.data.Dataset.from_tensor_slices(data)
            if shuffle:
                ds = ds.shuffle(n, seed=self.seed, reshuffle_each_iteration=True)
            return ds.batch(bs).prefetch(2)
        rng = np.random.RandomState(self.seed)
        dim = self._feature_dim(f)

        def gen():
            order = rng.permutation(n) if shuffle else np.arange(n)
            for s in range(0, n, bs):
                idx = np.sort(order[s:s + bs]) if shuffle else order[s:s + bs]
                x = np.asarray(self.feature_fn(f[idx]), dtype=np.float32)
                yield (x,) if targets is None else (x, targets[idx])

        sig = (tf.TensorSpec((None, dim), tf.float32),)
        if targets is not None:
            sig += (tf.TensorSpec((None, targets.shape[1]), tf.int32),)
        return tf.data.Dataset.from_generator(gen, output_signature=sig).prefetch(2)

    # --- fit ---------------------------------------------------------------------
    def fit(self, f, y):
        from sklearn.model_selection import StratifiedKFold

        self._check_params()
        f, y = _check_fy(f, y, "training")
        f = np.ascontiguousarray(f, dtype=np.float32)
        classes, y_idx = np.unique(y, return_inverse=True)
        k, n = len(classes), len(y)
        if k < 2:
            raise ValueError(f"training labels hold a single class ({classes.tolist()}); need >= 2")
        cv = self.l2 is None
        grid = self.grid_
        n_folds, epochs, batch_size = int(self.n_folds), int(self.epochs), int(self.batch_size)
        fold = np.full(n, -1, dtype=np.int32)
        if cv:
            if np.bincount(y_idx).min() < n_folds:
                raise ValueError(f"every class needs at least n_folds={n_folds} training rows")
            skf = StratifiedKFold(n_folds, shuffle=True, random_state=self.seed)
            for j, (_, held) in enumerate(skf.split(np.zeros(n), y_idx)):
                fold[held] = j
            fold_ids = list(range(n_folds)) + [_NO_FOLD]
        else:
            fold_ids = [_NO_FOLD]
        # head h = (fold_ids[h // G], grid[h % G]): trained on the rows outside fold
        # fold_ids[h // G]; no row is in _NO_FOLD (rows outside any fold carry -1).
        head_fold = np.repeat(fold_ids, len(grid))
        head_l2 = np.tile(grid, len(fold_ids))
        dim = self._feature_dim(f)
        heads = _MultiHeadDense(len(head_fold), k, head_l2, name="heads")
        trainer = _CVTrainer(self.feature_layer_ if self.feature_fn is None else None, heads, head_fold,
                             name="softmax_probe_cv")
        steps = epochs * -(-n // batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(float(self.learning_rate), decay_steps=steps, alpha=0.0)
        trainer.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=self.jit_compile)
        targets = np.stack([y_idx, fold], axis=1).astype(np.int32)
        t0 = time.time()
        history = trainer.fit(self._dataset(f, targets, shuffle=True), epochs=epochs, shuffle=False,
                              verbose=self.verbose)
        logits = trainer.predict(self._dataset(f), verbose=0)  # (n, H, k)
        pred = np.argmax(logits, axis=-1)  # (n, H)
        G = len(grid)
        if cv:
            acc = np.zeros((n_folds, G))
            for j in range(n_folds):
                rows = fold == j
                acc[j] = np.mean(pred[rows][:, j * G:(j + 1) * G] == y_idx[rows, None], axis=0)
            cv_acc = acc.mean(axis=0)
            best = int(np.argmax(cv_acc))  # grid is strongest-first: ties -> stronger penalty
        else:
            cv_acc, best = None, 0
        final = len(fold_ids) - 1  # the all-rows block
        h = final * G + best
        kernel = keras.ops.convert_to_numpy(heads.kernel)[:, h * k:(h + 1) * k]
        bias = keras.ops.convert_to_numpy(heads.bias)[h * k:(h + 1) * k]
        self.l2_ = float(grid[best])
        self.classes_ = classes
        self.n_train_ = n
        self.n_features_ = dim
        self.coef_ = np.ascontiguousarray(kernel.T)
        self.intercept_ = np.asarray(bias)
        self.cv_accuracy_ = None if cv_acc is None else cv_acc.tolist()
        self.train_accuracy_ = float(np.mean(pred[:, h] == y_idx))
        self.history_ = history.history
        self.fit_seconds_ = time.time() - t0
        self.model = self._export_model(f.shape[1], kernel, bias)
        return self

    def _export_model(self, d, kernel, bias):
        """f -> class logits (for feature_fn: features -> logits, see `predict`)."""
        in_dim = self.n_features_ if self.feature_fn is not None else d
        inp = keras.Input((in_dim,), name="f" if self.feature_fn is None else "features")
        x = inp
        if self.feature_fn is None and self.feature_layer_ is not None:
            x = self.feature_layer_(x)
        dense = keras.layers.Dense(len(self.classes_), kernel_regularizer=keras.regularizers.L2(self.l2_),
                                   name="softmax_regression")
        out = dense(x)
        dense.set_weights([kernel, bias])
        return keras.Model(inp, out, name="softmax_probe")

    def summary(self):
        """JSON-friendly facts of the fit (chosen l2 and its C, CV accuracies, schedule, time)."""
        if not hasattr(self, "model"):
            raise RuntimeError("SoftmaxProbe is not fitted; call fit(f, y) first")
        k = len(self.classes_)
        return {
            "l2": self.l2_,
            "l2_grid": list(self.grid_),
            "cv_accuracy": self.cv_accuracy_,
            "sklearn_C": sklearn_C(self.l2_, self.n_train_, k) if self.l2_ > 0 else None,
            "n_features": self.n_features_,
            "n_classes": k,
            "classes": self.classes_.tolist(),
            "n_folds": int(self.n_folds) if self.l2 is None else None,
            "epochs": int(self.epochs),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "fit_seconds": round(self.fit_seconds_, 3),
        }

    # --- predict -----------------------------------------------------------------
    def decision_function(self, f):
        """(n, k) class logits."""
        if not hasattr(self, "model"):
            raise RuntimeError("SoftmaxProbe is not fitted; call fit(f, y) first")
        f, _ = _check_fy(f, None, "evaluation")
        if len(f) == 0:
            return np.zeros((0, len(self.classes_)), np.float32)
        f = np.ascontiguousarray(f, dtype=np.float32)
        return self.model.predict(self._dataset(f), verbose=0)

    def predict(self, f):
        return self.classes_[np.argmax(self.decision_function(f), axis=1)]

    def score(self, f, y):
        f, y = _check_fy(f, y, "evaluation")
        return float(np.mean(self.predict(f) == y))


def softmax_probe(f_train, y_train, f_test=None, y_test=None, **probe_kwargs):
    """Fit a `SoftmaxProbe` and evaluate it; returns a dict.

    Keys: train_accuracy, test_accuracy (None without a test set), l2 (chosen),
    l2_grid, cv_accuracy (per grid value, or None for a fixed l2),
    sklearn_C (the equivalent C for the refit, `sklearn_C`), n_train, n_test,
    n_features, n_classes, classes, n_folds, epochs, batch_size,
    learning_rate, coef (k, n_features), intercept (k,), test_predictions,
    fit_seconds (training + CV), seconds (total). Apart from the numpy
    arrays every value is JSON-friendly (sklearn_C is None for l2 = 0). For
    the Keras model itself use `SoftmaxProbe` (its ``model`` attribute).
    """
    t0 = time.time()
    f_train, y_train = _check_fy(f_train, y_train, "training")
    if (f_test is None) != (y_test is None):
        raise ValueError("pass both f_test and y_test, or neither")
    if f_test is not None:
        f_test, y_test = _check_fy(f_test, y_test, "test")
        if f_test.shape[1] != f_train.shape[1]:
            raise ValueError(f"test f has {f_test.shape[1]} columns, train {f_train.shape[1]}")
    probe = SoftmaxProbe(**probe_kwargs).fit(f_train, y_train)
    result = {
        "train_accuracy": probe.train_accuracy_,
        "test_accuracy": None,
        "n_train": int(len(y_train)),
        "n_test": 0,
        **probe.summary(),
        "coef": probe.coef_,
        "intercept": probe.intercept_,
        "test_predictions": None,
    }
    if f_test is not None:
        pred = probe.predict(f_test)
        result.update(test_accuracy=float(np.mean(pred == y_test)), n_test=int(len(y_test)),
                      test_predictions=pred)
    result["seconds"] = round(time.time() - t0, 3)
    return result
