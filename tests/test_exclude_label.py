"""An exclude rule by model label drops one preset of a model, not every preset (issue 9, item 7:
the shipped benchmark_config's rule meant for ResNet-18 also dropped cnn.small)."""
from pathlib import Path

from mlbench.config import schema as cfg
from mlbench.run import matrix

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_config_excludes_resnet18_at_512_but_keeps_cnn_small():
    ids = {c.cell_id for c in matrix.expand(cfg.load_config(ROOT / "configs" /
                                                            "benchmark_config.yaml"))}
    assert "pytorch-cnn-cuda0-bs512-fp32" in ids               # cnn.small (default preset)
    assert "pytorch-cnn.resnet18-cuda0-bs128-fp32" in ids
    assert not any(i.startswith(("pytorch-cnn.resnet18-", "jax-transformer.gpt2-small-"))
                   and "-bs512-" in i for i in ids)
