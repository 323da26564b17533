"""`--compile`: the torch.compile'd training step gives the same losses as eager (CPU, fp32)."""

from __future__ import annotations

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.train import TrainConfig, pretrain


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    data = write_shards(tmp_path / "data", n_train=120, n_val=20)
    tok = save_tokenizer_dir(tmp_path)
    results = {}
    for comp in (False, True):
        cfg = TrainConfig(preset="thinking-micro", data=str(data), tokenizer=str(tok),
                          out=str(tmp_path / f"run-{comp}"), steps=6, batch_size=4, seq_len=32,
                          compile=comp, val_every=6, progress=False, tensorboard=False, seed=0)  # fmt: skip
        results[comp] = pretrain.run(cfg)
    assert results[True].final_loss == pytest.approx(results[False].final_loss, rel=1e-4)
    assert results[True].val_loss == pytest.approx(results[False].val_loss, rel=1e-4)
