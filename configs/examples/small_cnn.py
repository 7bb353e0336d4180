"""A small CNN (no residuals, no batch norm: not the built-in one) written natively in each
framework, for `mlbench run --config configs/examples/own_model.yaml`.

mlbench reads INPUT and the function names without importing this file; only the workers import
it, each with its own framework, so every framework import stays inside its function. Each
function builds the model that maps a batch of INPUT to logits [batch, num_classes]. Images
arrive NHWC in jax and tensorflow and NCHW in pytorch (each framework's convention). `width`
comes from the config's `options`.
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
