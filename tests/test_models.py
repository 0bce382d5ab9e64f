"""pipeline.models: a mixed-precision model rebuilt to compute in float32 for export."""

import keras
import numpy as np

from pipeline.models import in_float32
from pipeline.nn import build_preset


def test_a_bfloat16_model_is_rebuilt_in_float32_with_the_same_weights():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        mixed = build_preset("resnet20", 10, (32, 32, 3), stages=(1, 1, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rebuilt = in_float32(mixed)
    assert {layer.dtype_policy.name for layer in mixed.layers} >= {"mixed_bfloat16"}
    assert {layer.dtype_policy.name for layer in rebuilt.layers} == {"float32"}
    for kept, original in zip(rebuilt.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, original)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    exact = rebuilt.predict(images, verbose=0)
    assert exact.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: the two agree to about 1e-2 in probability.
    np.testing.assert_allclose(exact, mixed.predict(images, verbose=0), atol=5e-2)
    assert in_float32(rebuilt) is rebuilt  # a float32 model is returned as it is
