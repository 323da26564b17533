"""Training: pre-training (`pretrain.run`) and SFT (`sft.run`) over one shared loop.

Modules: `config` (TrainConfig / SFTConfig dataclasses that recipe tables fill), `data`
(stateless shard batches + val windows + unigram baseline), `sft_data` (chat/FIM/text examples →
ids + loss mask, packing), `optim` (AdamW groups, Muon), `schedule` (warmup + cosine / WSD),
`loop` (the step loop, validation in bits per byte), `checkpointing` (atomic step dirs with
trainer state, exact resume), `distributed` (torchrun, DDP, FSDP2), `logging` (JSONL, TensorBoard,
rich), `cli` (`hillclimb train`, `hillclimb sft`).

Library use (what `hillclimb climb` calls):

    from hillclimb.train import TrainConfig, SFTConfig, pretrain, sft
    result = pretrain.run(TrainConfig(preset="thinking-tiny", data=..., tokenizer=..., out=...))
    result = sft.run(SFTConfig(init=result.final_dir, problems={"tiers": [1, 2], "n": 500}, out=...))

Heavy modules (torch) are imported lazily so `import hillclimb.train` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hillclimb.train.config import SFTConfig, TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from hillclimb.train.loop import RunResult


def __getattr__(name: str) -> Any:
    if name in ("pretrain", "sft", "loop"):
        import importlib

        return importlib.import_module(f"hillclimb.train.{name}")
    if name == "RunResult":
        from hillclimb.train.loop import RunResult

        return RunResult
    raise AttributeError(name)


__all__ = ["RunResult", "SFTConfig", "TrainConfig"]
