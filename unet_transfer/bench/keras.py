"""The paper's own stack, side by side: the Keras U-Net of 2019 (the same layer list: two 3x3
convs per level, max-pooling, dropout 0.5 in the bottleneck, nearest up-sampling with a 2x2
"same" conv, concatenation, a 1x1 sigmoid output), trained with Adam 1e-4 on the same size and
batch on the same machine. Only when TensorFlow is importable (`pip install .[keras]`); the
tests never need it. Timed as the best of a few steps after warm-up, as our loops are."""

from __future__ import annotations

import os
import time


def available() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def keras_unet(width: int, size: int, levels: int = 4):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow import keras
    from tensorflow.keras import layers

    def double(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
        return layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)

    inputs = keras.Input((size, size, 1))
    x, skips = inputs, []
    for level in range(levels):
        x = double(x if level == 0 else layers.MaxPooling2D(2)(x), width * 2**level)
        skips.append(x)
    x = layers.Dropout(0.5)(double(layers.MaxPooling2D(2)(x), width * 2**levels))
    for level in reversed(range(levels)):
        up = layers.Conv2D(width * 2**level, 2, padding="same", activation="relu",
                           kernel_initializer="he_normal")(layers.UpSampling2D(2)(x))
        x = double(layers.concatenate([skips[level], up], axis=3), width * 2**level)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    return model


def images_per_s(width: int, size: int, batch: int, steps: int = 3, budget_s: float = 60.0,
                 threads: int | None = None) -> dict:
    """Training throughput of the Keras U-Net (best step after one warm-up step), on as many CPU
    threads as our path (`threads`: TensorFlow's own pools, set before its runtime starts)."""
    import numpy as np
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime already started (an earlier call): the pools stay as they are
            pass

    model = keras_unet(width, size)
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 1), dtype=np.float32)
    masks = (rng.random((batch, size, size, 1)) > 0.5).astype(np.float32)
    model.train_on_batch(images, masks)  # builds the graph
    times, start = [], time.perf_counter()
    while len(times) < steps and (time.perf_counter() - start < budget_s or len(times) < 1):
        begin = time.perf_counter()
        model.train_on_batch(images, masks)
        times.append(time.perf_counter() - begin)
    return {"images_per_s": batch / min(times), "step_s": min(times), "steps": len(times),
            "tensorflow": tf.__version__, "parameters": int(model.count_params()),
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or None}
