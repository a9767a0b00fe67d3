"""The Keras layer of an exported linear probe: class probabilities from (coef_, intercept_)."""

import keras


@keras.saving.register_keras_serializable(package="tflm")
class LinearProbeHead(keras.layers.Layer):
    """Class probabilities of a fitted linear probe (sklearn's coef_ / intercept_).

    Modes: "binary" (one row w: p1 = sigmoid(w.x + b), p0 = 1 - p1),
    "multinomial" (softmax(W x + b)), "ovr" (one-vs-rest as sklearn's
    liblinear: sigmoid(W x + b) normalised to sum 1).
    """

    MODES = ("binary", "multinomial", "ovr")

    def __init__(self, num_features, num_outputs, mode="multinomial", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"unknown probe mode {mode!r}; choose one of {self.MODES}")
        if mode == "binary" and num_outputs != 1:
            raise ValueError(f"a binary probe has one row of weights, got {num_outputs}")
        self.num_features = int(num_features)
        self.num_outputs = int(num_outputs)
        self.mode = mode

    def build(self, input_shape=None):
        self.kernel = self.add_weight(shape=(self.num_features, self.num_outputs), initializer="zeros",
                                      trainable=False, name="kernel")
        self.bias = self.add_weight(shape=(self.num_outputs,), initializer="zeros", trainable=False, name="bias")
        self.built = True

    def call(self, x):
        from keras import ops

        z = ops.matmul(ops.cast(x, self.kernel.dtype), self.kernel) + self.bias
        if self.mode == "binary":
            p1 = ops.sigmoid(z[:, 0])
            return ops.stack([1.0 - p1, p1], axis=1)
        if self.mode == "ovr":
            s = ops.sigmoid(z)
            return s / ops.sum(s, axis=1, keepdims=True)
        return ops.softmax(z, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"num_features": self.num_features, "num_outputs": self.num_outputs, "mode": self.mode})
        return config
