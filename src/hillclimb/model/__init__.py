"""The sparse Mixture-of-Experts decoder shared by `thinking` and `code-flash`.

One concern per module: `config` (dataclass + presets), `norm`, `rope` (rotary + YaRN),
`attention` (MHA/GQA/MQA + QK-norm over SDPA), `kv_cache`, `moe` (router, experts, balancing),
`transformer` (blocks + model), `accounting` (params/FLOPs/KV from the modules themselves),
`checkpoint` (HF-layout directories) and `hf` (Qwen3-MoE interop).
"""

from hillclimb.model.config import ModelConfig, get_preset, preset_names

__all__ = ["ModelConfig", "get_preset", "preset_names"]
