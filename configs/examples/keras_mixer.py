"""A tiny MLP-Mixer written once in Keras 3: mlbench runs it on every Keras backend
(frameworks keras-jax, keras-torch, keras-tensorflow) from the same seeded weights, so the gate
compares its numbers exactly. See configs/examples/keras_model.yaml.
"""
INPUT = {"kind": "image", "shape": [16, 16, 3], "num_classes": 10}


def keras(width=16, patch=4, blocks=1):
    import keras
    L = keras.layers
    h, w, c = INPUT["shape"]
    tokens = (h // patch) * (w // patch)
    inp = keras.Input(INPUT["shape"])
    x = L.Conv2D(width, patch, strides=patch)(inp)            # patches -> [b, h/p, w/p, width]
    x = L.Reshape((tokens, width))(x)
    for _ in range(blocks):
        y = L.LayerNormalization(epsilon=1e-5)(x)              # token mixing
        y = L.Permute((2, 1))(y)
        y = L.Dense(tokens, activation="gelu")(y)
        x = x + L.Permute((2, 1))(y)
        y = L.LayerNormalization(epsilon=1e-5)(x)              # channel mixing
        x = x + L.Dense(width)(L.Dense(2 * width, activation="gelu")(y))
    x = L.GlobalAveragePooling1D()(L.LayerNormalization(epsilon=1e-5)(x))
    return keras.Model(inp, L.Dense(INPUT["num_classes"])(x))
