"""PyTorch worker: the built-in models (workers/models/: mlp, cnn, transformer, lstm, vit) in
PyTorch's fast path, one builder per model (BUILDERS); the canonical weights are loaded by one
naming convention (modules named by their canonical names, tensors by TENSOR_NAMES).

Owns: building the specs.py models as torch modules, the train/predict/evaluate primitives of
`harness.FrameworkInterface`, and the torch knobs of a cell (threads, TF32, autocast, GradScaler,
torch.compile, channels_last, cudnn.benchmark), recorded by `settings()`.
Timing is not here: the harness times every framework with the same code.
Imports the harness, specs, numpy (through specs) and torch only; never mlbench.

Idiomatic fast path: model.train() once, zero_grad(set_to_none=True), forward under autocast,
backward, Adam step (fused where torch supports it); inference under torch.inference_mode()
in eval mode. Losses stay on the device until `sync`.

LSTM bias layout: specs (keras/flax) have ONE bias of 4*hidden per layer; torch's LSTM has two
(b_ih, b_hh). b_hh is kept at zero with requires_grad=False, is not given to the optimizer and is
not counted, so the model is the spec's model and the counts match to the unit.
"""
from __future__ import annotations

import contextlib
import math
import os

import driver
import harness
import specs
from harness import DeviceUnusable, FrameworkInterface, SkipCell

torch = None  # imported by import_framework, timed like any framework import
nn = None
F = None
# The aten kernels behind F.scaled_dot_product_attention, as torch's profiler names them, and
# the short name a result records (torch.nn.attention.SDPBackend's, without "_attention").
SDPA_KERNELS = (("aten::_scaled_dot_product_flash_attention", "flash"),
                ("aten::_scaled_dot_product_flash_attention_for_cpu", "flash"),
                ("aten::_scaled_dot_product_efficient_attention", "efficient"),
                ("aten::_scaled_dot_product_cudnn_attention", "cudnn"),
                ("aten::_scaled_dot_product_fused_attention_overrideable", "overrideable"),
                ("aten::_scaled_dot_product_attention_math", "math"),
                ("aten::_scaled_dot_product_attention_math_for_mps", "math"))

OPTIONS = {"compile": False, "channels_last": False}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("fp32", "bf16", "fp16")
# The key op of each input kind, run once under CPU autocast before a low-precision CPU cell:
# (module, input) makers.
AUTOCAST_PROBES = {
    "image": lambda: (nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.randn(2, 3, 5, 5)),
    "sequence": lambda: (nn.LSTM(4, 4, batch_first=True), torch.randn(2, 3, 4)),
    "vector": lambda: (nn.Linear(4, 4), torch.randn(2, 4)),
}
# What torch.compile does not compile, per built-in model (shown in the cell's settings).
# Dynamo does not trace nn.LSTM (torch._dynamo.config.allow_rnn is False, and turning it on fails
# in inductor on the CPU): the module runs eager.
COMPILE_NOTES = {"lstm": "nn.LSTM is skipped by dynamo (allow_rnn=False): eager"}


# --- models ------------------------------------------------------------------------------------

def build_mlp(spec: dict):
    from collections import OrderedDict
    dims = [spec["input_dim"], *spec["hidden"], spec["num_classes"]]
    layers = OrderedDict()
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers[f"dense{i}"] = nn.Linear(a, b)
        if i < len(dims) - 2:
            layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)


def _cnn_cls():
    class CNN(nn.Module):
        """ResNet of BasicBlocks, its convolutions and batch norms registered flat under their
        canonical names (conv<j>, bn<j> in models/cnn.py `layers` order: the stem, then per
        block conv1, conv2 and the shortcut conv) and wired by a plan of indices per block."""

        def __init__(self, spec):
            super().__init__()
            eps, mom = spec["bn_eps"], spec["bn_momentum"]
            self.n = 0

            def conv_bn(cin, cout, k, stride):
                j, self.n = self.n, self.n + 1
                self.add_module(f"conv{j}", nn.Conv2d(cin, cout, k, stride=stride,
                                                      padding=k // 2, bias=False))
                self.add_module(f"bn{j}", nn.BatchNorm2d(cout, eps=eps, momentum=mom))
                return j

            w0 = spec["widths"][0]
            if spec["stem"] not in ("imagenet", "cifar"):
                raise ValueError(f"unknown cnn stem {spec['stem']!r}; known: cifar, imagenet")
            self.imagenet = spec["stem"] == "imagenet"
            self.stem = conv_bn(spec["channels"], w0, 7 if self.imagenet else 3,
                                2 if self.imagenet else 1)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1) if self.imagenet else None
            self.plan, c = [], w0  # per block: (conv1, conv2, shortcut conv or None)
            for stage, (width, nblocks) in enumerate(zip(spec["widths"], spec["blocks"])):
                for b in range(nblocks):
                    stride = 2 if (stage > 0 and b == 0) else 1
                    first, second = conv_bn(c, width, 3, stride), conv_bn(width, width, 3, 1)
                    short = conv_bn(c, width, 1, stride) if (stride != 1 or c != width) else None
                    self.plan.append((first, second, short))
                    c = width
            self.fc = nn.Linear(c, spec["num_classes"])

        def _cbn(self, j, x):
            return getattr(self, f"bn{j}")(getattr(self, f"conv{j}")(x))

        def forward(self, x):
            x = F.relu(self._cbn(self.stem, x))
            if self.pool is not None:
                x = self.pool(x)
            for first, second, short in self.plan:
                out = self._cbn(second, F.relu(self._cbn(first, x)))
                x = F.relu(out + (x if short is None else self._cbn(short, x)))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
    return CNN


def build_cnn(spec: dict):
    return _cnn_cls()(spec)


def _block_cls():
    class Block(nn.Module):
        """Pre-norm block (transformer: causal; vit: not): x + proj(attn(ln1(x))),
        x + out(gelu_tanh(fc(ln2(x))))."""

        def __init__(self, d, heads, eps, causal=True):
            super().__init__()
            self.heads, self.causal = heads, causal
            self.ln1 = nn.LayerNorm(d, eps=eps)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d, eps=eps)
            self.fc = nn.Linear(d, 4 * d)
            self.out = nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                       for z in (q, k, v))
            # scale 1/sqrt(head_dim)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
    return Block


def _named_blocks(parent, blocks: list) -> list:
    """Register the blocks as block0, block1, ... (their canonical names) and return them as a
    plain list for the forward loop."""
    for i, blk in enumerate(blocks):
        parent.add_module(f"block{i}", blk)
    return blocks


def _gpt2_init(module, blocks, n_layers: int) -> None:
    """GPT-2 init: N(0, 0.02) weights, zero biases, residual projections / sqrt(2n)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    for blk in blocks:
        for m in (blk.proj, blk.out):
            nn.init.normal_(m.weight, 0.0, 0.02 / math.sqrt(2 * n_layers))


def _transformer_cls():
    Block = _block_cls()

    class GPT(nn.Module):
        """GPT-2 style decoder-only LM; the head is tied to the token embedding, no bias."""

        def __init__(self, spec):
            super().__init__()
            d, n = spec["d_model"], spec["n_layers"]
            self.tok = nn.Embedding(spec["vocab_size"], d)
            self.pos = nn.Embedding(spec["seq_len"], d)
            self.blocks = _named_blocks(self, [Block(d, spec["n_heads"], spec["ln_eps"])
                                               for _ in range(n)])
            self.ln_f = nn.LayerNorm(d, eps=spec["ln_eps"])
            _gpt2_init(self, self.blocks, n)

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.tok(idx) + self.pos(pos)
            for blk in self.blocks:
                x = blk(x)
            return F.linear(self.ln_f(x), self.tok.weight)
    return GPT


def _lstm_cls():
    class LSTMClassifier(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.lstm = nn.LSTM(spec["input_dim"], spec["hidden"], spec["n_layers"],
                                batch_first=True)
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_hh"):  # the spec has one bias per layer: see docstring
                    with torch.no_grad():
                        p.zero_()
                    p.requires_grad_(False)
            self.fc = nn.Linear(spec["hidden"], spec["num_classes"])

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])
    return LSTMClassifier


def _vit_cls():
    Block = _block_cls()

    class ViT(nn.Module):
        """Vision Transformer: patch embedding (Conv2d, kernel = stride = patch), class token,
        learned positions, pre-norm blocks without a causal mask, final LN, head on the class
        token. Takes NCHW (or channels_last) images."""

        def __init__(self, spec):
            super().__init__()
            d, n, p = spec["d_model"], spec["n_layers"], spec["patch_size"]
            tokens = (spec["image_size"] // p) ** 2 + 1
            self.patch = nn.Conv2d(spec["channels"], d, p, stride=p)
            self.cls = nn.Parameter(torch.empty(d))
            self.pos = nn.Parameter(torch.empty(tokens, d))
            self.blocks = _named_blocks(self, [Block(d, spec["n_heads"], spec["ln_eps"],
                                                     causal=False) for _ in range(n)])
            self.ln_f = nn.LayerNorm(d, eps=spec["ln_eps"])
            self.head = nn.Linear(d, spec["num_classes"])
            # blocks GPT-2 style (it touches Linear layers only: the Conv2d patch embedding
            # keeps torch's default), the head torch's default again, as models/vit.py says
            _gpt2_init(self, self.blocks, n)
            self.head.reset_parameters()
            nn.init.normal_(self.cls, 0.0, 0.02)
            nn.init.normal_(self.pos, 0.0, 0.02)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)  # (B, patches, d), row-major patches
            cls = self.cls.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + self.pos
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln_f(x[:, 0]))
    return ViT


def build_vit(spec: dict):
    return _vit_cls()(spec)


def build_transformer(spec: dict):
    return _transformer_cls()(spec)


def build_lstm(spec: dict):
    return _lstm_cls()(spec)


# One builder per built-in model (workers/models/): spec -> an nn.Module (logits out).
BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "transformer": build_transformer,
            "lstm": build_lstm, "vit": build_vit}


def build_model(spec: dict):
    m = spec["model"]
    if m == "user":  # the user's own file: its pytorch(**options) (workers/usermodel.py)
        import usermodel
        return usermodel.build(spec, "pytorch", nn.Module, "a torch.nn.Module")
    if m not in BUILDERS:
        raise ValueError(f"unknown model {m!r}; the pytorch worker builds {', '.join(BUILDERS)}")
    return BUILDERS[m](spec)


def count_module(model) -> dict:
    """Trainable params (shared ones once); non-trainable = BN running mean and var only.

    Frozen parameters (the zero LSTM b_hh) and num_batches_tracked are not counted.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    non_trainable = sum(b.numel() for name, b in model.named_buffers()
                        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var"))
    return {"trainable": int(trainable), "non_trainable": int(non_trainable)}


def _transposed(array):
    return array.T


def _hwio_to_oihw(array):
    return array.transpose(3, 2, 0, 1)


# The naming convention (workers/weights.py's canonical names): a module is named by its
# canonical name (dense0, conv3, bn3, block0.qkv, tok, ...); its tensors by its type, each with
# the conversion from the canonical layout: {attribute: (suffix, convert) or None: not canonical}.
# A parameter of any other module is named by its path (the vit's cls, pos).
TENSOR_NAMES = {
    "Linear": {"weight": (".kernel", _transposed), "bias": (".bias", None)},  # [out, in]
    "Conv2d": {"weight": (".kernel", _hwio_to_oihw), "bias": (".bias", None)},  # OIHW
    "BatchNorm2d": {"weight": (".gamma", None), "bias": (".beta", None),
                    "running_mean": (".mean", None), "running_var": (".var", None),
                    "num_batches_tracked": None},
    "LayerNorm": {"weight": (".gamma", None), "bias": (".beta", None)},
    "Embedding": {"weight": ("", None)},  # the table itself: tok, pos
    # a stacked nn.LSTM named `lstm`: layer l is lstm<l>; weight_ih [4h, in] and weight_hh
    # [4h, h] with the canonical i, f, g, o gate order; bias_ih is the one bias, bias_hh is
    # kept at zero (frozen: see the docstring)
    "LSTM": {"weight_ih": ("{l}.kernel", _transposed), "weight_hh": ("{l}.recurrent", _transposed),
             "bias_ih": ("{l}.bias", None), "bias_hh": None},
}


def canonical_tensors(model) -> list:
    """[(canonical name, tensor, convert)] for every canonical tensor of `model`, found by the
    naming convention (TENSOR_NAMES)."""
    out = []
    for path, mod in model.named_modules():
        rules = TENSOR_NAMES.get(type(mod).__name__)
        for attr, tensor in [*mod.named_parameters(recurse=False),
                             *mod.named_buffers(recurse=False)]:
            if rules is None:
                out.append((f"{path}.{attr}" if path else attr, tensor, None))
                continue
            base, _, layer = attr.partition("_l") if isinstance(mod, nn.LSTM) else (attr, "", "")
            rule = rules[base]
            if rule is not None:
                suffix, convert = rule
                out.append((path + suffix.format(l=layer), tensor, convert))
    return out


def load_canonical(model, spec: dict, params: dict) -> None:
    """Copy the canonical weights (workers/weights.py) into `model`, each into the tensor its
    canonical name finds (canonical_tensors) in torch's layout; every tensor of the model must
    get one and every canonical tensor must be used."""
    import numpy as np
    import weights

    used = set()
    for name, tensor, convert in canonical_tensors(model):
        if name not in params:
            raise weights.WeightMismatch(f"pytorch: the model's {name} has no canonical weight")
        array = params[name] if convert is None else convert(params[name])
        value = torch.from_numpy(np.ascontiguousarray(array))
        weights.expect_shape(name, value, tensor.shape, "pytorch")
        with torch.no_grad():
            tensor.copy_(value)
        used.add(name)
    weights.check_consumed(params, used, "pytorch")


# --- the backend -------------------------------------------------------------------------------

class TorchBackend(FrameworkInterface):
    name = "pytorch"

    def __init__(self, request: dict):
        super().__init__(request)
        opts = dict(request.get("options") or {})
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown pytorch option(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(OPTIONS)}")
        self.options = {**OPTIONS, **opts}
        c = self.options["compile"]
        if c is True:
            self.compile_mode = "default"
        elif c is False or c is None:
            self.compile_mode = "none"
        elif isinstance(c, str) and c in COMPILE_MODES:
            self.compile_mode = c
        else:
            raise ValueError(f"option 'compile' must be true, false or one of "
                             f"{', '.join(COMPILE_MODES)}; got {c!r}")
        if not isinstance(self.options["channels_last"], bool):
            raise ValueError("option 'channels_last' must be true or false")
        self.precision = request.get("precision", "fp32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; "
                             f"allowed: {', '.join(PRECISIONS)}")
        dev = str(request.get("device", "cpu"))
        if dev != "cpu" and not (dev == "cuda" or dev.startswith("cuda:")):
            raise ValueError(f"unknown device {dev!r}; allowed: cpu, cuda:N")
        self.req_device = dev
        self.is_cuda = dev != "cpu"
        # The parent makes the cell's GPU the only visible one: always the first visible device.
        self.device = torch.device("cuda:0" if self.is_cuda else "cpu")
        self.device_type = self.device.type
        threads = int(request.get("threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
            self.interop = 1
        except RuntimeError:  # already started: record what we got
            self.interop = torch.get_num_interop_threads()
        self.tf32 = bool(request.get("tf32", False))
        self.matmul_precision = "high" if self.tf32 else "highest"
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.set_float32_matmul_precision(self.matmul_precision)
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16,
                          "fp16": torch.float16}[self.precision]
        self.scaler = None
        self.training_mode = None
        self.model = None

    def framework_info(self) -> dict:
        return _info(self.is_cuda and torch.cuda.is_available())

    def check_supported(self) -> None:
        if self.is_cuda:
            if not torch.cuda.is_available():
                raise DeviceUnusable(
                    f"device {self.req_device} not present: torch.cuda.is_available() is False "
                    f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}, "
                    f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
            if self.precision == "bf16" and not torch.cuda.is_bf16_supported():
                raise SkipCell(f"bf16 is not supported on {torch.cuda.get_device_name(0)}")
        elif self.precision != "fp32":
            self._probe_cpu_autocast()

    def _probe_cpu_autocast(self) -> None:
        """Run the model's key op under CPU autocast once; a missing kernel becomes a skip."""
        m = self.request["model"]
        make = AUTOCAST_PROBES.get(specs.kind(specs.request_spec(self.request)),
                                   AUTOCAST_PROBES["vector"])
        probe, x = make()
        try:
            with torch.autocast("cpu", dtype=self.amp_dtype):
                out = probe(x)
                out = out[0] if isinstance(out, tuple) else out
            out.float().sum().backward()
        except RuntimeError as exc:
            raise SkipCell(f"{self.precision} autocast on cpu cannot run {m} in torch "
                           f"{torch.__version__}: {str(exc).splitlines()[0]}") from None

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def build_model(self, spec: dict) -> None:
        self.spec = spec
        torch.manual_seed(int(self.request["seed"]))
        if self.is_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
        model = build_model(spec).to(self.device)
        self.channels_last = bool(self.options["channels_last"]) and specs.kind(spec) == "image"
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt, self.fused = _adam(params, spec)
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(self.device_type)
        self.fwd = model if self.compile_mode == "none" else torch.compile(
            model, mode=None if self.compile_mode == "default" else self.compile_mode)

    def count_flops(self) -> int | None:
        """Forward FLOPs per sample of a user's model, by torch.utils.flop_counter."""
        from torch.utils.flop_counter import FlopCounterMode
        self._set_mode(False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.model(self.x_eval[:1])
        return int(counter.get_total_flops()) or None

    def count_parameters(self) -> dict:
        return count_module(self.model)

    def count_parameters_abstract(self, spec: dict) -> dict:
        with torch.device("meta"):
            model = build_model(spec)
        return count_module(model)

    def load_data(self, data: dict) -> None:
        def x_to_device(a):
            t = torch.from_numpy(a)
            if specs.kind(self.spec) == "tokens":
                t = t.long()
            if specs.kind(self.spec) == "image":  # NHWC in numpy -> NCHW (or channels_last)
                t = t.permute(0, 3, 1, 2)
                fmt = torch.channels_last if self.channels_last else torch.contiguous_format
                return t.to(self.device).contiguous(memory_format=fmt)
            return t.to(self.device).contiguous()

        self.x_train = x_to_device(data["x_train"])
        self.x_eval = x_to_device(data["x_eval"])
        self.y_train = torch.from_numpy(data["y_train"]).long().to(self.device)
        self.y_eval = torch.from_numpy(data["y_eval"]).long().to(self.device)
        self.bs = int(self.request["batch_size"])
        self.sync(None)

    def _loss(self, out, y, reduction="mean"):
        if specs.kind(self.spec) == "tokens":  # averaged over every token
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                   reduction=reduction)
        return F.cross_entropy(out, y, reduction=reduction)

    def _set_mode(self, training: bool) -> None:
        if self.training_mode is not training:
            self.model.train(training)
            self.training_mode = training

    def train_step(self, batch_index: int):
        s = slice(batch_index * self.bs, (batch_index + 1) * self.bs)
        x, y = self.x_train[s], self.y_train[s]
        self._set_mode(True)
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self._loss(self.fwd(x), y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return loss.detach()

    def predict(self, batch_index: int):
        s = slice(batch_index * self.bs, (batch_index + 1) * self.bs)
        self._set_mode(False)
        with torch.inference_mode(), self._autocast():
            return self.fwd(self.x_eval[s])

    def sync(self, value):
        if self.is_cuda:
            torch.cuda.synchronize()
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return float(value.item())
        return value  # a prediction: computed (synchronized), left on the device

    def sync_losses(self, losses):
        if self.is_cuda:
            torch.cuda.synchronize()
        return torch.stack(losses).float().cpu().tolist()  # one host copy for the block

    def evaluate(self) -> dict:
        self._set_mode(False)
        n = len(self.y_eval)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for start in range(0, n, self.bs):
                x, y = self.x_eval[start:start + self.bs], self.y_eval[start:start + self.bs]
                with self._autocast():
                    out = self.fwd(x)
                loss_sum += self._loss(out.float(), y, reduction="sum").double()
                correct += (out.argmax(dim=-1) == y).sum()
        count = self.y_eval.numel()  # samples, or tokens for the transformer
        return {"loss": float(loss_sum.item()) / count, "accuracy": int(correct.item()) / count}

    # --- equivalence gate ----------------------------------------------------------------
    def load_canonical(self, params: dict) -> None:
        load_canonical(self.model, self.spec, params)

    def to_numpy(self, output):
        return output.detach().float().cpu().numpy()

    def received_batch(self, split: str, index: int) -> tuple:
        s = slice(index * self.bs, (index + 1) * self.bs)
        x = getattr(self, f"x_{split}")[s]
        if specs.kind(self.spec) == "image":
            x = x.permute(0, 2, 3, 1)  # back to the canonical NHWC
        x = x.cpu().numpy()
        if specs.kind(self.spec) == "tokens":
            x = x.astype("int32")  # torch indexes with int64; the tokens are the int32 ones
        return x, getattr(self, f"y_{split}")[s].cpu().numpy().astype("int32")

    MEMORY_FIGURE = ("torch.cuda.max_memory_allocated: bytes of live tensors (the caching "
                     "allocator's pool: peak_device_reserved_bytes)")

    def reset_peak_memory(self) -> bool:
        if not self.is_cuda:
            return False
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return True

    def peak_memory(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if self.is_cuda else None

    def get_memory_usage(self) -> dict:
        if self.is_cuda:  # the peak over the whole cell (every phase's), model and data included
            phases = self.phase_memory()
            seen = [v for v in (phases["peak_device_warmup_bytes"],
                                phases["peak_device_train_bytes"],
                                phases["peak_device_infer_bytes"], self.peak_memory())
                    if v is not None]
            return {"peak_device_bytes": max(seen),
                    "peak_device_reserved_bytes": int(torch.cuda.max_memory_reserved()),
                    **phases}
        return {"peak_device_bytes": None}

    def _compile_note(self) -> dict:
        note = COMPILE_NOTES.get(self.request.get("model"))
        return {"compile_note": note} if note and self.compile_mode != "none" else {}

    def settings(self) -> dict:
        return {
            "threads": torch.get_num_threads(), "interop_threads": self.interop,
            "tf32": self.tf32, "matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "compile": self.compile_mode, **self._compile_note(),
            "channels_last": getattr(self, "channels_last", False),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "precision": self.precision,
            "autocast_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype
            else None,
            # autocast: matmul/conv outputs in the low precision, layer norm, softmax and the
            # residual stream in float32 (Flax dtype=bf16 and Keras mixed_bfloat16 keep them
            # in bf16); inference returns the low-precision logits as they come
            "activation_dtype": ("mixed: matmul/conv outputs "
                                 f"{str(self.amp_dtype).replace('torch.', '')}, norms and "
                                 "residual stream float32") if self.amp_dtype else "float32",
            "inference_output_dtype": str(self.amp_dtype or torch.float32).replace("torch.", ""),
            "bf16_reduced_precision_reduction":
                torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            "fp16_reduced_precision_reduction":
                torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
            "grad_scaler": self.scaler is not None,
            "adam": "fused" if getattr(self, "fused", False) else "default",
            "device": str(self.device), **self.framework_info(),
            "attention": self._attention_kernel(),
        }

    def _attention_kernel(self) -> str | None:
        """The kernel F.scaled_dot_product_attention runs for this model's attention shapes,
        dtype and device (flash, efficient, cudnn or math): one call on zeros of those shapes
        under torch's profiler, the aten kernel it dispatched to read from the trace ('sdpa'
        when the trace names none of them)."""
        spec = getattr(self, "spec", None)
        att = specs.attention(spec) if spec else None
        if att is None:
            return None
        try:
            from torch.profiler import ProfilerActivity, profile
            q = torch.zeros(1, att["heads"], att["tokens"], att["head_dim"], device=self.device,
                            dtype=self.amp_dtype or torch.float32, requires_grad=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                F.scaled_dot_product_attention(q, q, q, is_causal=att["causal"])
            ran = {event.name for event in prof.events()}
            return next((f"sdpa-{kernel}" for op, kernel in SDPA_KERNELS if op in ran), "sdpa")
        except Exception:  # noqa: BLE001 - a diagnostic, never worth a failed cell
            return "sdpa"


def _adam(params: list, spec: dict):
    """Adam, and whether it is the fused kernel: fused where torch has one for the parameters'
    device and dtype. Asked of torch itself: one step of a fused Adam on a throwaway parameter
    of that device and dtype (torch refuses an unsupported one with a RuntimeError at the
    step); the model's own optimizer state is never touched by the probe."""
    kwargs = {"lr": spec["learning_rate"], "betas": (spec["beta1"], spec["beta2"]),
              "eps": spec["adam_eps"], "weight_decay": 0.0}
    probe = torch.nn.Parameter(torch.zeros(1, device=params[0].device, dtype=params[0].dtype))
    probe.grad = torch.zeros_like(probe)
    try:
        torch.optim.Adam([probe], fused=True).step()
    except RuntimeError:
        return torch.optim.Adam(params, **kwargs), False
    return torch.optim.Adam(params, fused=True, **kwargs), True


def _info(cuda: bool) -> dict:
    info = {"framework_version": torch.__version__,
            "device_name": torch.cuda.get_device_name(0) if cuda
            else harness.cpu_name(),
            "cuda_version": torch.version.cuda}
    try:
        info["cudnn_version"] = torch.backends.cudnn.version() if torch.version.cuda else None
    except Exception:  # noqa: BLE001  (a broken cuDNN install is not this cell's concern)
        info["cudnn_version"] = None
    return info



def _cell_wants_cuda() -> bool:
    """The hello message comes before the backend exists: peek at the request's device."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False  # a CPU cell: never touch CUDA
    try:
        return str(harness.read_request().get("device", "cpu")).startswith("cuda")
    except (OSError, ValueError, SystemExit):
        return False


def import_framework() -> dict:
    global torch, nn, F
    import torch as _torch
    import torch.nn as _nn
    import torch.nn.functional as _F
    torch, nn, F = _torch, _nn, _F
    return _info(_cell_wants_cuda() and torch.cuda.is_available())


if __name__ == "__main__":
    harness.main(TorchBackend, "pytorch", import_framework, driver.run_cell)
