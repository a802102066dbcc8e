"""FusionX-style LoRAs for MV-DiT-17B, merged into the weights exactly as the official script does.

The file (``.safetensors`` only) holds, under the official parameter names prefixed ``diffusion_model.``,
``<name>.lora_down.weight`` / ``<name>.lora_up.weight`` pairs and full differences ``<name>.diff`` (weights)
and ``<name>.diff_b`` (biases). Each tensor is read as bfloat16 (as the official), then merged in the
parameter's dtype: ``W += up @ down`` (alpha ignored, scale 1) and ``W += diff``, ``b += diff_b``.
diffusers' own LoRA converter scales by alpha / rank and would not match.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import ModelFileError
from .transformer_17b import to_ours

PREFIX = "diffusion_model."


@torch.no_grad()
def merge_lora(transformer, path: str | Path) -> int:
    """Merge the LoRA at ``path`` into ``transformer``'s weights (in place); returns the tensors changed."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: a LoRA must be a .safetensors file (pickled formats are not read)")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k).to(torch.bfloat16) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelFileError(f"{path}: cannot read the LoRA ({type(exc).__name__}: {exc})") from None
    params = dict(transformer.named_parameters())
    changed, unknown = 0, []
    for key, tensor in tensors.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if name.endswith(".lora_down.weight"):
            target = name[: -len(".lora_down.weight")] + ".weight"
            up = tensors.get(PREFIX + target[: -len(".weight")] + ".lora_up.weight")
            if up is None:
                continue
            param = params.get(to_ours(target))
            if param is None:
                unknown.append(target)
                continue
            param.add_(up.to(param.device, param.dtype) @ tensor.to(param.device, param.dtype))
        elif name.endswith(".diff_b") or name.endswith(".diff"):
            bias = name.endswith(".diff_b")
            target = name[: -len(".diff_b")] + ".bias" if bias else name[: -len(".diff")] + ".weight"
            param = params.get(to_ours(target))
            if param is None:
                unknown.append(target)
                continue
            param.add_(tensor.to(param.device, param.dtype))
        else:
            continue
        changed += 1
    if changed == 0:
        raise ModelFileError(
            f"{path}: no tensor of this LoRA fits MV-DiT-17B (expected diffusion_model.<official name>.lora_down/"
            f"lora_up.weight, .diff, .diff_b; {len(unknown)} names unknown, e.g. {unknown[:3]})"
        )
    return changed
