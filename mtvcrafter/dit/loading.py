"""Reading diffusers-style model folders from disk, with messages that say which file and where it comes from."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from .errors import DiTError, ModelFileError

WEIGHT_NAMES = ("diffusion_pytorch_model", "model")


def refuse_unknown_keywords(where: str, unknown: dict, known: list[str]) -> None:
    """diffusers' ``from_pretrained`` drops keywords it does not know; ours say so, since a misspelt
    ``torch_dtype`` silently loading float32 weights costs a user an out-of-memory error later."""
    if unknown:
        names = ", ".join(sorted(unknown))
        raise DiTError(
            f"{where} got unknown keyword argument(s) {names}; it takes {', '.join(known)} (local folders only: "
            "nothing is downloaded, so hub options such as revision or token do not apply)"
        )


def check_torch_dtype(where: str, torch_dtype) -> None:
    """``torch_dtype`` must be None or a floating-point ``torch.dtype``."""
    if torch_dtype is not None and not (isinstance(torch_dtype, torch.dtype) and torch_dtype.is_floating_point):
        raise DiTError(
            f"{where}: torch_dtype must be a floating-point torch.dtype (torch.bfloat16, say), got {torch_dtype!r}"
        )


def read_config(folder: Path, origin: str, name: str = "config.json") -> dict:
    """``folder/name`` as a dict; a clear error if the folder or the file is missing or broken."""
    if not folder.is_dir():
        held = "config.json and the weights" if name == "config.json" else name
        raise ModelFileError(f"{folder}: no such folder; it should hold {held} of {origin}")
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"{path}: missing {name}; copy it from {origin}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not readable JSON ({exc}); copy it again from {origin}") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: a model configuration is a JSON object, got {type(config).__name__}")
    return config


def weight_files(folder: Path, origin: str) -> list[Path]:
    """The weight files of a folder: a sharded index's shards, or the one weights file."""
    for stem in WEIGHT_NAMES:
        for ext in (".safetensors", ".bin"):
            index = folder / f"{stem}{ext}.index.json"
            if index.is_file():
                try:
                    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                    names = sorted(set(weight_map.values()))
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ModelFileError(
                        f"{index}: not a valid shard index ({exc}); copy it again from {origin}"
                    ) from None
                files = [folder / n for n in names]
                missing = [f.name for f in files if not f.is_file()]
                if missing:
                    raise ModelFileError(
                        f"{folder}: {len(missing)} of {len(files)} weight shards named by {index.name} are missing "
                        f"({', '.join(missing[:4])}{', …' if len(missing) > 4 else ''}); download them from {origin}"
                    )
                return files
            single = folder / f"{stem}{ext}"
            if single.is_file():
                return [single]
    candidates = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if len(candidates) == 1:
        return candidates
    if candidates:
        raise ModelFileError(
            f"{folder}: {len(candidates)} weight files but no *.index.json saying how they fit together; "
            f"download the index from {origin}"
        )
    raise ModelFileError(
        f"{folder}: no weights (diffusion_pytorch_model.safetensors, .bin, or a sharded set with its index); "
        f"download them from {origin}"
    )


def _tensors(path: Path, device, dtype: torch.dtype | None, trust: bool):
    """``(name, tensor)`` pairs of one weights file, converted one tensor at a time (safetensors are
    read lazily, so the peak is the converted model plus one tensor in its stored dtype)."""

    def convert(tensor):
        return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device=str(device)) as f:
                for name in f.keys():
                    yield name, convert(f.get_tensor(name))
            return
        try:
            state = torch.load(path, map_location=device, weights_only=not trust, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location=device, weights_only=not trust)  # a legacy (non-zip) file
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: refused by safe loading (weights_only=True): {str(exc).splitlines()[0]}. Use a .safetensors "
            f"copy, or pass trust_checkpoint=True (--trust-checkpoint) if you trust this file: loading it runs its code"
        ) from None
    except ModelFileError:
        raise
    except Exception as exc:  # safetensors and torch raise a variety of types for damaged files
        raise ModelFileError(f"{path}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    for name in list(state):
        tensor = state.pop(name)
        if not isinstance(tensor, torch.Tensor):
            raise ModelFileError(f"{path}: {name!r} is not a tensor")
        yield name, convert(tensor)


def _listing(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def load_weights(
    folder: Path,
    expected: dict[str, tuple[int, ...]],
    dtype: torch.dtype | None,
    device,
    origin: str,
    trust: bool = False,
    rename=None,
    stored_name=None,
) -> dict[str, torch.Tensor]:
    """Every tensor of ``folder``'s weights, checked against ``expected`` names and shapes.

    ``rename`` maps a stored name to the model's (None: the same); errors name tensors as stored
    (``stored_name`` maps a model name back). Missing, unexpected and mis-shaped tensors are all listed
    in one error. ``.bin`` files are read with ``weights_only=True`` unless ``trust`` (which runs their
    pickle code)."""
    rename = rename or (lambda name: name)
    stored_name = stored_name or (lambda name: name)
    state: dict[str, torch.Tensor] = {}
    stored: dict[str, str] = {}
    for path in weight_files(folder, origin):
        for name, tensor in _tensors(path, device, dtype, trust):
            ours = rename(name)
            state[ours] = tensor
            stored[ours] = name
    missing = sorted(stored_name(k) for k in set(expected) - set(state))
    unexpected = sorted(stored[k] for k in set(state) - set(expected))
    wrong = [
        f"{stored[k]} {tuple(state[k].shape)} ≠ {s}"
        for k, s in expected.items()
        if k in state and tuple(state[k].shape) != s
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{len(names)} {kind} ({_listing(names, 6 if kind != 'mis-shaped' else 4)})"
            for kind, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong))
            if names
        ]
        raise ModelFileError(
            f"{folder}: the weights do not match config.json: "
            + "; ".join(parts)
            + f". config.json and the weights must be the files of {origin}"
        )
    return state


def model_from_folder(
    cls,
    folder: Path,
    origin: str,
    what: str,
    torch_dtype: torch.dtype | None,
    device,
    trust: bool = False,
    make_config=None,
    rename=None,
    stored_name=None,
):
    """A diffusers model of class ``cls`` from ``folder``'s ``config.json`` (through ``make_config``) and
    weights, built on the meta device and filled strictly (see :func:`load_weights`); ``what`` names the
    model in errors (``MV-DiT-7B``), ``origin`` the files' source."""
    config = read_config(folder, origin)
    try:
        with torch.device("meta"):
            model = cls.from_config(make_config(config) if make_config else config)
    except Exception as exc:  # a damaged or foreign config.json: wrong types, unknown activation, …
        raise ModelFileError(
            f"{folder / 'config.json'}: not a usable {what} configuration ({type(exc).__name__}: {exc}); "
            f"copy config.json again from {origin}"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = load_weights(folder, expected, torch_dtype, device, origin, trust, rename, stored_name)
    model.load_state_dict(state, strict=True, assign=True)
    return model
