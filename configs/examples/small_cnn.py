"""A small CNN (no residuals, no batch norm: not the built-in one) written natively in each
framework, for `mlbench run --config configs/examples/own_model.yaml`.

mlbench reads INPUT and the function names without importing this file; only the workers import
it, each with its own framework, so every framework import stays inside its function. Each
function builds the model that maps a batch of INPUT to logits [batch, num_classes]. Images
arrive NHWC in jax and tensorflow and NCHW in pytorch (each framework's convention). `width`
comes from the config's `options`.

`canonical_weights()` and the `load_<framework>()` functions below are optional: with them every
framework starts from the very same weights, so the equivalence gate compares the numbers
(outputs and losses before and after a few Adam steps), not only counts and shapes. The layout
of the weights is yours; each loader converts it to its framework's own.
"""
INPUT = {"kind": "image", "shape": [16, 16, 3], "num_classes": 10}


def pytorch(width=8):
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, INPUT["num_classes"]))


def jax(width=8):
    import flax.linen as nn

    class SmallCNN(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.relu(nn.Conv(2 * self.width, (3, 3), padding="SAME")(x))
            return nn.Dense(INPUT["num_classes"])(x.mean(axis=(1, 2)))

    return SmallCNN(width)


def tensorflow(width=8):
    import keras
    L = keras.layers
    return keras.Sequential([
        keras.Input(INPUT["shape"]),
        L.Conv2D(width, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(2 * width, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(INPUT["num_classes"])])


def keras(width=8):
    """The same CNN once more in Keras 3: add keras-jax, keras-torch or keras-tensorflow to
    frameworks to see what Keras costs on top of each native framework."""
    import keras
    L = keras.layers
    return keras.Sequential([
        keras.Input(INPUT["shape"]),
        L.Conv2D(width, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(2 * width, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(INPUT["num_classes"])])


# --- optional: the same starting weights everywhere (the numeric equivalence gate) ------------

def canonical_weights(width=8, seed=0):
    """{name: numpy array}, drawn from `seed` (mlbench passes the config's): conv kernels HWIO
    [kh, kw, in, out], dense kernel [in, out] (y = x @ kernel + bias)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    c = INPUT["shape"][2]

    def u(fan_in, shape):
        bound = fan_in ** -0.5
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    return {"conv0.kernel": u(9 * c, (3, 3, c, width)), "conv0.bias": u(9 * c, (width,)),
            "conv1.kernel": u(9 * width, (3, 3, width, 2 * width)),
            "conv1.bias": u(9 * width, (2 * width,)),
            "fc.kernel": u(2 * width, (2 * width, INPUT["num_classes"])),
            "fc.bias": u(2 * width, (INPUT["num_classes"],))}


def _in_order(w):
    return [w[k] for k in ("conv0.kernel", "conv0.bias", "conv1.kernel", "conv1.bias",
                           "fc.kernel", "fc.bias")]


def load_pytorch(model, w):
    """In place (the optimizer holds these tensors): conv OIHW, linear [out, in]."""
    import torch
    conv0, conv1, fc = model[0], model[3], model[7]
    with torch.no_grad():
        conv0.weight.copy_(torch.from_numpy(w["conv0.kernel"].transpose(3, 2, 0, 1)))
        conv0.bias.copy_(torch.from_numpy(w["conv0.bias"]))
        conv1.weight.copy_(torch.from_numpy(w["conv1.kernel"].transpose(3, 2, 0, 1)))
        conv1.bias.copy_(torch.from_numpy(w["conv1.bias"]))
        fc.weight.copy_(torch.from_numpy(w["fc.kernel"].T))
        fc.bias.copy_(torch.from_numpy(w["fc.bias"]))


def load_jax(variables, w):
    """Returns the variables: linen's params tree has the canonical layouts already."""
    variables["params"] = {
        "Conv_0": {"kernel": w["conv0.kernel"], "bias": w["conv0.bias"]},
        "Conv_1": {"kernel": w["conv1.kernel"], "bias": w["conv1.bias"]},
        "Dense_0": {"kernel": w["fc.kernel"], "bias": w["fc.bias"]}}
    return variables


def load_tensorflow(model, w):
    model.set_weights(_in_order(w))  # Keras' layouts are the canonical ones


def load_keras(model, w):
    model.set_weights(_in_order(w))
