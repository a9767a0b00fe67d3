"""Adam whose update is TensorFlow's fused kernel: Keras' Adam arithmetic on dense gradients, in one pass."""

import keras


@keras.saving.register_keras_serializable(package="tflm")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose per-variable update is `tf.raw_ops.ResourceApplyAdam`.

    Keras' Adam updates each variable with about ten separate element-wise ops
    (two `assign_add`s, an `assign_sub` and their operands), each a pass over
    memory; TensorFlow's fused kernel computes the same update in one pass
    (SmolLM2's 135M weights on 2 CPU cores: 0.72 -> 0.22 s per step,
    `bench/profile_train.py`):

        m <- m + (g - m) (1 - beta_1),  v <- v + (g^2 - v) (1 - beta_2),
        w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

    with t = iterations + 1: Keras' Adam (its "epsilon hat" form), so on dense
    gradients the two agree to float rounding. The state (momentums,
    velocities, iterations) is Keras' own, so checkpoints and
    `BackupAndRestore` are unchanged. A sparse gradient (the token embedding's
    `IndexedSlices`) is summed into a dense one first, so g^2 is the square of
    each row's total gradient, as in torch's dense Adam. Keras' Adam differs
    there: its `ops.square` squares the slices before repeated indices are
    summed, so a token that occurs k times in a batch gets v from the sum of
    its k squared per-occurrence gradients instead of the square of their sum.
    Other backends and `amsgrad=True` use Keras' update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        var = variable.value if isinstance(variable, keras.Variable) else variable
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        dtype = var.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype), use_locking=False,
        )
