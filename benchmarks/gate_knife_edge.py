"""Why configs/modes.yaml's cnn differs between tensorflow without XLA and the others after the
gate's Adam steps on seed 0: one input of a ReLU lies within fp32 rounding of zero.

Runs the gate's cnn (preset small, batch 16, the gate's canonical weights and first training
batch) in Keras on TensorFlow in float64 (the reference), and in float32 eagerly (the kernels
tf.function runs without XLA) and under XLA. Prints each float32 path's largest error against
float64 for the batch-norm input and output of the last stage's first block (bn6), the element
of that output nearest zero, and the gradients of a few weights, so you can see that both
float32 paths compute the same model to about 1e-6, that the element's true value (about 4e-7)
is below that error, and that the side it lands on decides one ReLU gradient element, which
moves bn6's gradients by several percent in the path that lands on zero.

    PYTHONPATH=$PWD python benchmarks/gate_knife_edge.py [seed]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

WORKERS = Path(__file__).resolve().parent.parent / "workers"
sys.path.insert(0, str(WORKERS))


def main(seed: int) -> None:
    import numpy as np

    import specs
    import tensorflow_worker as tw
    import weights
    tw.import_framework()
    tf, keras = tw.tf, tw.keras
    request = {"model": "cnn", "model_options": {"preset": "small"}, "batch_size": 16,
               "train_samples": 48, "eval_samples": 16, "data_path": None, "seed": seed}
    spec = specs.request_spec(request)
    data = specs.make_dataset(spec, request)
    canon = weights.canonical_params(spec, seed, exercise=True)
    y = tf.constant(data["y_train"][:16])

    def build(dtype: str):
        keras.mixed_precision.set_global_policy(dtype)
        plain = keras.Input
        keras.Input = lambda shape, dtype=None: plain(shape, dtype=keras.mixed_precision
                                                      .global_policy().name)
        try:
            inp, out = tw.build_cnn(spec)
        finally:
            keras.Input = plain
        model = keras.Model(inp, out)
        tw.load_canonical(model, spec, {k: np.asarray(v, dtype) for k, v in canon.items()})
        probe = keras.Model(model.input, [model.get_layer("bn6").input,
                                          model.get_layer("bn6").output])
        return model, probe

    def run(dtype: str, xla: bool):
        model, probe = build(dtype)
        x = tf.constant(data["x_train"][:16].astype(dtype))

        def step():
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=y, logits=tf.cast(logits, dtype)))
            grads = tape.gradient(loss, model.trainable_variables)
            return probe(x, training=True), grads

        fn = tf.function(step, jit_compile=True) if xla else step
        (bn_in, bn_out), grads = fn()
        names = [v.path for v in model.trainable_variables]
        return (bn_in.numpy().astype(np.float64), bn_out.numpy().astype(np.float64),
                {n: g.numpy().astype(np.float64) for n, g in zip(names, grads)})

    ref_in, ref_out, ref_grads = run("float64", False)
    at = np.unravel_index(np.argmin(np.abs(ref_out)), ref_out.shape)
    print(f"seed {seed}: bn6 output element nearest zero {tuple(int(i) for i in at)}: "
          f"float64 {ref_out[at]:+.3e}")
    for name, xla in (("float32 eager (tf.function without XLA)", False),
                      ("float32 XLA", True)):
        b_in, b_out, grads = run("float32", xla)
        print(f"{name}:")
        print(f"  bn6 input  max abs err {np.abs(b_in - ref_in).max():.2e}")
        print(f"  bn6 output max abs err {np.abs(b_out - ref_out).max():.2e}; the element: "
              f"{b_out[at]:+.3e} (ReLU gradient {'1' if b_out[at] > 0 else '0'})")
        for w in ("conv7/kernel", "bn6/beta", "bn6/gamma", "conv6/kernel", "conv0/kernel"):
            g, r = grads[w], ref_grads[w]
            rel = np.abs(g - r).max() / np.abs(r).max()
            print(f"  gradient {w:13s} max err / max |g|: {rel:.2e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
