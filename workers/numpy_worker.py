"""numpy reference worker: the MLP with hand-written forward, backward and Adam.

Owns: the reference implementation the framework workers are checked against (same spec, same
data, same optimizer), for the models in BUILDERS (the mlp: models/mlp.py REFERENCE = 'numpy';
the other models are judged pairwise by the gate), at fp32 on the CPU; anything else is skipped
with the reason. Imports the harness, specs and numpy only.
"""
from __future__ import annotations

import driver
import harness
from harness import FrameworkInterface, SkipCell

np = None  # imported by import_framework, timed like any framework import


class MLP:
    """Dense layers with ReLU; parameters in the canonical layout W[in, out], b[out]."""

    def __init__(self, spec: dict, rng):
        dims = [spec["input_dim"], *spec["hidden"], spec["num_classes"]]
        self.params = []
        for fan_in, fan_out in zip(dims, dims[1:]):
            bound = 1.0 / np.sqrt(fan_in)  # the default init of torch.nn.Linear
            self.params.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
            self.params.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))

    def forward(self, x):
        acts = [x]
        h = x
        n = len(self.params) // 2
        for i in range(n):
            h = h @ self.params[2 * i] + self.params[2 * i + 1]
            if i < n - 1:
                h = np.maximum(h, 0.0)
            acts.append(h)
        return h, acts

    def load_canonical(self, params: dict) -> set:
        """The canonical dense<i>.kernel [in, out] / .bias are this model's own layout."""
        import weights
        used = set()
        for i in range(len(self.params) // 2):
            for j, part in enumerate(("kernel", "bias")):
                name = f"dense{i}.{part}"
                weights.expect_shape(name, params[name], self.params[2 * i + j].shape, "numpy")
                self.params[2 * i + j][...] = params[name]
                used.add(name)
        return used

    @staticmethod
    def loss_and_dlogits(logits, y):
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        n = len(y)
        loss = -logp[np.arange(n), y].mean()
        d = np.exp(logp)
        d[np.arange(n), y] -= 1.0
        return float(loss), (d / n).astype(np.float32)

    def gradients(self, x, y):
        logits, acts = self.forward(x)
        loss, d = self.loss_and_dlogits(logits, y)
        grads = [None] * len(self.params)
        n = len(self.params) // 2
        for i in reversed(range(n)):
            grads[2 * i] = acts[i].T @ d
            grads[2 * i + 1] = d.sum(axis=0)
            if i > 0:
                d = (d @ self.params[2 * i].T) * (acts[i] > 0)
        return loss, grads


# The models the reference implements: spec, rng -> a model with params (a list of arrays),
# forward(x) -> (logits, activations), gradients(x, y) -> (loss, grads), load_canonical.
BUILDERS = {"mlp": MLP}


class Adam:
    def __init__(self, params, lr, b1, b2, eps):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(np.float32)


class NumpyBackend(FrameworkInterface):
    name = "numpy"

    def framework_info(self) -> dict:
        return {"framework_version": np.__version__, "device_name": "cpu (numpy)"}

    def check_supported(self) -> None:
        r = self.request
        if r["model"] not in BUILDERS:
            raise SkipCell(f"the numpy reference implements only {', '.join(BUILDERS)}, "
                           f"not {r['model']}")
        if r["device"] != "cpu":
            raise SkipCell(f"the numpy reference runs on the CPU only, not {r['device']}")
        if r["precision"] != "fp32":
            raise SkipCell(f"the numpy reference runs fp32 only, not {r['precision']}")

    def build_model(self, spec: dict) -> None:
        self.spec = spec
        self.model = BUILDERS[spec["model"]](spec, np.random.default_rng(int(self.request["seed"])))
        self.opt = Adam(self.model.params, spec["learning_rate"], spec["beta1"], spec["beta2"],
                        spec["adam_eps"])

    def count_parameters(self) -> dict:
        return {"trainable": int(sum(p.size for p in self.model.params)), "non_trainable": 0}

    def count_parameters_abstract(self, spec: dict) -> dict:
        if spec["model"] not in BUILDERS:
            raise SkipCell(f"the numpy reference implements only {', '.join(BUILDERS)}, "
                           f"not {spec['model']}")
        model = BUILDERS[spec["model"]](spec, np.random.default_rng(0))  # built for real
        return {"trainable": int(sum(p.size for p in model.params)), "non_trainable": 0}

    def load_data(self, data: dict) -> None:
        self.data = data
        self.bs = int(self.request["batch_size"])

    def _batch(self, split: str, i: int):
        s = slice(i * self.bs, (i + 1) * self.bs)
        return self.data[f"x_{split}"][s], self.data[f"y_{split}"][s]

    def train_step(self, batch_index: int):
        x, y = self._batch("train", batch_index)
        loss, grads = self.model.gradients(x, y)
        self.opt.update(self.model.params, grads)
        return loss

    def predict(self, batch_index: int):
        return self.model.forward(self._batch("eval", batch_index)[0])[0]

    def sync(self, value):
        return value  # numpy is synchronous

    def evaluate(self) -> dict:
        logits, _ = self.model.forward(self.data["x_eval"])
        loss, _ = self.model.loss_and_dlogits(logits, self.data["y_eval"])
        acc = float((logits.argmax(axis=1) == self.data["y_eval"]).mean())
        return {"loss": loss, "accuracy": acc}

    # --- equivalence gate: the reference the framework workers are compared with ----------
    def load_canonical(self, params: dict) -> None:
        import weights
        weights.check_consumed(params, self.model.load_canonical(params), "numpy")

    def to_numpy(self, output):
        return np.asarray(output, dtype=np.float32)

    def received_batch(self, split: str, index: int) -> tuple:
        return self._batch(split, index)

    def settings(self) -> dict:
        return {"threads": int(self.request.get("threads") or 0), "compile": "none"}


def import_framework() -> dict:
    global np
    import numpy
    np = numpy
    return {"framework_version": numpy.__version__, "device_name": "cpu"}


if __name__ == "__main__":
    harness.main(NumpyBackend, "numpy", import_framework, driver.run_cell)
