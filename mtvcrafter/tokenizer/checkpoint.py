"""Reading 4DMoT weights: the official DeepSpeed file, or our own folder (safetensors + config)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from .errors import TokenizerError
from .model import FourDMoT, TokenizerConfig, config_from_state_dict

OFFICIAL_FILE = "mp_rank_00_model_states.pt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights file behind ``path``: the file itself, our folder's safetensors, or the official
    ``mp_rank_00_model_states.pt`` in a folder (also inside a ``4DMoT/`` subfolder, as downloaded)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / WEIGHTS_FILE, path / OFFICIAL_FILE, path / "4DMoT" / OFFICIAL_FILE):
            if candidate.is_file():
                return candidate
        raise TokenizerError(
            f"{path}: no tokenizer weights here (looked for {WEIGHTS_FILE} and {OFFICIAL_FILE}, also in 4DMoT/); "
            "the official file comes from the Hugging Face repository yanboding/MTVCrafter, folder 4DMoT/"
        )
    raise TokenizerError(
        f"{path}: no such file or folder; the official tokenizer is 4DMoT/{OFFICIAL_FILE} from the Hugging "
        "Face repository yanboding/MTVCrafter"
    )


def read_state_dict(path: Path, trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], TokenizerConfig]:
    """State dict and configuration from a resolved weights file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise TokenizerError(f"{path}: not a readable safetensors file ({exc})") from None
        config_path = path.with_name(CONFIG_FILE)
        if config_path.is_file():
            try:
                config = TokenizerConfig.from_dict(json.loads(config_path.read_text()))
            except (ValueError, TypeError, TokenizerError) as exc:
                raise TokenizerError(f"{config_path}: not a valid tokenizer configuration ({exc})") from None
        else:
            config = _config_or_error(state, path)
        return state, config
    state = _torch_load(path, trust_checkpoint)
    return state, _config_or_error(state, path)


def _torch_load(path: Path, trust_checkpoint: bool) -> dict[str, torch.Tensor]:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if blocked is None or trust_checkpoint:
            raise TokenizerError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
        raise TokenizerError(
            f"{path}: the checkpoint holds the class {blocked.group(1)}, which safe loading refuses. If you "
            "trust where the file came from, load it with trust_checkpoint=True (command line: "
            "--trust-checkpoint), which runs whatever code the file contains"
        ) from None
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise TokenizerError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(raw, dict) and isinstance(raw.get("module"), dict):
        raw = raw["module"]  # DeepSpeed model states
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise TokenizerError(f"{path}: expected a state dict (or DeepSpeed model states with 'module')")
    return raw


def _config_or_error(state: dict[str, torch.Tensor], path: Path) -> TokenizerConfig:
    if not any(k.startswith(("encoder.", "decoder.", "vq.")) for k in state):
        sample = ", ".join(list(state)[:4]) or "nothing"
        raise TokenizerError(
            f"{path}: not a 4DMoT checkpoint (no encoder, decoder or vq weights; it holds {sample}, …)"
        )
    return config_from_state_dict(state)


def build_model(state: dict[str, torch.Tensor], config: TokenizerConfig, path: Path) -> FourDMoT:
    """The model with ``state`` loaded strictly: every missing or unexpected name is listed."""
    with torch.device("meta"):
        model = FourDMoT(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k
        for k in set(expected) & set(state)
        if tuple(expected[k].shape) != tuple(state[k].shape) or not state[k].is_floating_point()
    )
    if missing or unexpected or wrong:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected)):
            if names:
                parts.append(f"{len(names)} {label}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
        if wrong:
            parts.append(
                "wrong shapes or types: "
                + ", ".join(
                    f"{k} {state[k].dtype} {tuple(state[k].shape)} (expected floats {tuple(expected[k].shape)})"
                    for k in wrong[:4]
                )
            )
        raise TokenizerError(f"{path}: the weights do not fit 4DMoT ({'; '.join(parts)})")
    # Assign the loaded tensors to the meta-device model: no time spent on a random initialisation.
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model
