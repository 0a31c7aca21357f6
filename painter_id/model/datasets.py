"""``tf.data`` over the resized arrays: in memory when the rows fit, else streamed from the memory map.

Shuffled per epoch with a seed (training) or in order (prediction), and prefetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

# Arrays up to this size are copied into memory (fast, simple; TensorFlow also refuses
# constants over 2 GB); larger ones are streamed from the memory map batch by batch.
MAX_IN_MEMORY_BYTES = 1 << 30


def _streamed(images: np.ndarray, labels: Optional[np.ndarray], indices: np.ndarray, batch_size: int,
              seed: Optional[int]) -> tf.data.Dataset:
    import tensorflow as tf

    # A generator local to this dataset (no global state): each pass draws the next,
    # repeatable order.
    rng = np.random.default_rng(seed)

    def one_epoch() -> Iterator:
        order = rng.permutation(indices) if seed is not None else indices
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            x = np.asarray(images[chunk])
            yield (x, labels[chunk]) if labels is not None else x

    x_spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))
    signature = (x_spec, tf.TensorSpec((None,), tf.int64)) if labels is not None else x_spec
    return tf.data.Dataset.from_generator(one_epoch, output_signature=signature)


def make_dataset(images: np.ndarray, labels: Optional[np.ndarray], indices: Optional[np.ndarray],
                 batch_size: int, seed: Optional[int] = None,
                 max_in_memory_bytes: int = MAX_IN_MEMORY_BYTES) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data`` pipeline over ``images[indices]`` (and their labels).

    With a ``seed`` the rows are reshuffled every epoch, repeatably; without one they keep
    their order (evaluation, prediction). Pixels stay uint8: the model casts them.
    """
    # Imported here: the stages that only read arrays (resize, evaluate) start without TensorFlow.
    import tensorflow as tf

    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    row_bytes = int(np.prod(images.shape[1:])) * images.itemsize
    if len(indices) * row_bytes > max_in_memory_bytes:
        dataset = _streamed(images, labels, indices, batch_size, seed)
    else:
        x = np.asarray(images[indices])
        dataset = tf.data.Dataset.from_tensor_slices((x, labels[indices]) if labels is not None else x)
        if seed is not None:
            dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
