"""The YOCO inference cache: self-decoder states plus ONE global key/value cache.

YOCO (arXiv 2405.05254, §2 and §2.3 "Inference Advantages") caches keys and values once: the
cross-decoder layers all read a single global K/V built from the self-decoder output, while every
self-decoder layer keeps only a constant-size memory,

- gated retention (§3.1, recurrent form): the recurrent state ``S`` of shape ``(B, H, d_k, d_v)``, kept in
  float32 whatever the model dtype;
- sliding-window attention (§3.2): the keys and values of the last ``W`` tokens.

Memory (§2.3): ``2 · n_kv · d_h · s`` bytes per token for the global K/V (``s`` bytes
per element), plus per sequence ``L_self · H · d_h² · 4`` bytes for gRet or
``L_self · 2 · W · H · d_h · s`` bytes for SWA, against ``2 · L · n_kv · d_h · s`` per token for a
Transformer. :meth:`YocoCache.expected_nbytes` is that formula; :meth:`YocoCache.nbytes` counts
the tensors actually held, and the two agree.

The cache is a plain object, not a ``transformers.cache_utils.Cache``: that base class is a list
of per-layer key/value layers (``update(key, value, layer_idx)``, ``crop``, offloading), which
YOCO's layout does not fit. :class:`~papercraft.yoco.YocoForCausalLM` creates it in its forward
when none is given, and ``generate`` gets one from :meth:`YocoCache.prepare_for_generation`
instead of a ``DynamicCache``; the model updates it in place and returns it as ``output.cache``.
It offers what ``GenerationMixin`` reads: :meth:`get_seq_length`, :meth:`reorder_cache` (beam
search), ``is_compileable``, ``is_croppable`` and ``is_linear``. It cannot be cropped (a
retention state cannot drop tokens), so assisted decoding is not supported.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from papercraft.yoco.configuration_yoco import YocoConfig

__all__ = ["YocoCache"]


def _bytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


class YocoCache:
    """Per-layer gRet states or SWA windows, one global K/V and the number of tokens seen.

    Args:
        config (YocoConfig): the model's configuration (self-decoder kind, layers, window).

    Attributes:
        self_decoder (str): ``"gret"`` or ``"swa"``.
        sliding_window (int): ``W`` (kept keys per SWA layer).
        states (list[Tensor | None]): per self-decoder layer, the float32 gRet state
            ``(B, H, d_h, d_h)``; ``None`` before the first token or for SWA.
        window_keys (list[Tensor | None]): per self-decoder layer, SWA keys of the last
            ``min(W, seen)`` tokens ``(B, H, w, d_h)`` (RoPE applied); ``None`` for gRet.
        window_values (list[Tensor | None]): the matching SWA values ``(B, H, w, d_h)``.
        global_key (Tensor | None): the global keys ``(B, H_kv, S, d_h)`` (RoPE applied once).
        global_value (Tensor | None): the global values ``(B, H_kv, S, d_h)``.
        seen_tokens (int): tokens processed so far (``S``), padding included.
    """

    is_compileable = False
    is_croppable = False  # a retention state cannot be rolled back by dropping tokens

    def __init__(self, config: YocoConfig) -> None:
        if not isinstance(config, YocoConfig):
            raise TypeError(f"config must be a YocoConfig, got {type(config).__name__}")
        num_self = config.num_self_decoder_layers
        assert num_self is not None  # resolved by YocoConfig
        self.self_decoder: str = config.self_decoder
        self.sliding_window: int = config.sliding_window
        self.num_self_decoder_layers: int = num_self
        self.states: list[Tensor | None] = [None] * num_self
        self.window_keys: list[Tensor | None] = [None] * num_self
        self.window_values: list[Tensor | None] = [None] * num_self
        self.global_key: Tensor | None = None
        self.global_value: Tensor | None = None
        self.seen_tokens: int = 0
        self._is_user_defined = False  # set by generate for a cache the user passed in

    # ------------------------------------------------------------------------------------------
    # what GenerationMixin reads

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of tokens already in the cache (the same for every layer).

        Args:
            layer_idx (int): ignored; accepted for ``transformers`` compatibility. Default: 0.
        """
        return self.seen_tokens

    @property
    def is_linear(self) -> list[bool]:
        """Per self-decoder layer whether it is a linear recurrence, then ``False`` for the global K/V.

        Not all entries are ``True``, so ``generate`` slices already-cached prompt tokens off
        (the global K/V is position-indexed like an attention cache).
        """
        return [self.self_decoder == "gret"] * self.num_self_decoder_layers + [False]

    def _tensors(self) -> list[Tensor]:
        held = [*self.states, *self.window_keys, *self.window_values]
        held += [self.global_key, self.global_value]
        return [t for t in held if t is not None]

    @property
    def batch_size(self) -> int:
        """Batch size of the cached tensors, ``-1`` while the cache is empty."""
        tensors = self._tensors()
        return tensors[0].shape[0] if tensors else -1

    def reorder_cache(self, beam_idx: Tensor) -> None:
        """Select batch rows in place (beam search): row ``i`` becomes old row ``beam_idx[i]``.

        Args:
            beam_idx (Tensor): integer indices ``(B,)`` into the batch dimension.

        Raises:
            ValueError: if ``beam_idx`` is not a 1-dim integer tensor.
        """
        if beam_idx.ndim != 1 or beam_idx.is_floating_point():
            raise ValueError(
                f"beam_idx must be a 1-dim integer tensor, got {beam_idx.dtype} "
                f"of shape {tuple(beam_idx.shape)}"
            )

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, beam_idx.to(t.device))

        self.states = [pick(t) for t in self.states]
        self.window_keys = [pick(t) for t in self.window_keys]
        self.window_values = [pick(t) for t in self.window_values]
        self.global_key = pick(self.global_key)
        self.global_value = pick(self.global_value)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every batch row ``repeats`` times in place (expanding a prompt's cache to beams).

        Args:
            repeats (int): copies of each row, >= 1.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
        if self.batch_size < 0:
            return
        index = torch.arange(self.batch_size).repeat_interleave(repeats)
        self.reorder_cache(index)

    def reset(self) -> None:
        """Drop every tensor and set the token count back to 0."""
        n = self.num_self_decoder_layers
        self.states, self.window_keys, self.window_values = [None] * n, [None] * n, [None] * n
        self.global_key = self.global_value = None
        self.seen_tokens = 0

    @staticmethod
    def prepare_for_generation(
        config: YocoConfig, generation_config: Any, model_kwargs: dict[str, Any]
    ) -> bool:
        """Put a fresh cache in ``generate``'s ``model_kwargs`` (``cache``), or check the user's.

        Args:
            config (YocoConfig): the model's configuration.
            generation_config (Any): ``generate``'s ``GenerationConfig``.
            model_kwargs (dict[str, Any]): ``generate``'s model keyword arguments (updated).

        Returns:
            bool: whether ``model_kwargs`` now holds a cache.

        Raises:
            TypeError: for a user cache that is not a :class:`YocoCache`.
            ValueError: for a ``cache_implementation`` other than the default.
        """
        for name in ("cache", "past_key_values"):
            given = model_kwargs.get(name)
            if given is not None and not isinstance(given, YocoCache):
                raise TypeError(f"{name} passed to generate must be a YocoCache, got {type(given)}")
        if model_kwargs.get("past_key_values") is not None:
            model_kwargs["cache"] = model_kwargs.pop("past_key_values")
        user_cache = model_kwargs.get("cache")
        if isinstance(user_cache, YocoCache):
            user_cache._is_user_defined = True  # generate keeps a user's cache alive
            return True
        if generation_config.use_cache is False:
            return False
        implementation = generation_config.cache_implementation
        if implementation not in (None, "dynamic"):
            raise ValueError(
                "YOCO keeps its own cache (YocoCache); cache_implementation="
                f"{implementation!r} is not supported"
            )
        model_kwargs["cache"] = YocoCache(config)
        return True

    # ------------------------------------------------------------------------------------------
    # updates (called by the model, in this order, once per forward)

    def update_state(self, layer_idx: int, state: Tensor) -> None:
        """Store the gRet state ``(B, H, d_h, d_h)`` (float32) after this forward's tokens."""
        self.states[layer_idx] = state

    def store_window(self, layer_idx: int, key: Tensor, value: Tensor) -> None:
        """Keep the last ``W`` of an SWA layer's keys/values ``(B, H, w + T, d_h)``.

        ``key``/``value`` are the previously cached window followed by this forward's tokens,
        as the layer attended over them.
        """
        keep = self.sliding_window
        # contiguous copies so the dropped prefix is freed, not kept alive by a view
        self.window_keys[layer_idx] = key[:, :, -keep:].contiguous()
        self.window_values[layer_idx] = value[:, :, -keep:].contiguous()

    def past_window(self, layer_idx: int) -> tuple[Tensor | None, Tensor | None]:
        """The cached SWA keys and values of a layer (``None`` before the first token)."""
        return self.window_keys[layer_idx], self.window_values[layer_idx]

    def update_global(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append this forward's global keys/values ``(B, H_kv, T, d_h)`` and count the tokens.

        Returns:
            tuple[Tensor, Tensor]: the full global K/V ``(B, H_kv, S, d_h)``.
        """
        if self.global_key is not None and self.global_value is not None:
            key = torch.cat([self.global_key, key], dim=2)
            value = torch.cat([self.global_value, value], dim=2)
        self.global_key, self.global_value = key, value
        self.seen_tokens = key.shape[2]
        return key, value

    # ------------------------------------------------------------------------------------------
    # size

    def nbytes(self) -> int:
        """Bytes of the tensors held (states, windows and the global K/V)."""
        return sum(_bytes(t) for t in self._tensors())

    @staticmethod
    def expected_nbytes(
        config: YocoConfig, *, batch_size: int, seq_len: int, dtype: torch.dtype
    ) -> int:
        """The cache size after ``seq_len`` tokens by the formula of §2.3 (methods note).

        ``B · (2 · n_kv · d_h · S · s + L_self · H · d_h² · 4)`` for gRet (the state is float32)
        and ``B · (2 · n_kv · d_h · S · s + L_self · 2 · min(W, S) · H · d_h · s)`` for SWA, with
        ``s`` the bytes per element of ``dtype``.

        Args:
            config (YocoConfig): the model's configuration.
            batch_size (int): sequences ``B``.
            seq_len (int): tokens ``S`` seen, >= 1.
            dtype (torch.dtype): the dtype of the model's activations (the global K/V and windows).

        Returns:
            int: bytes.

        Raises:
            ValueError: on a non-positive ``batch_size`` / ``seq_len`` or a non-floating dtype.
        """
        if not isinstance(config, YocoConfig):
            raise TypeError(f"config must be a YocoConfig, got {type(config).__name__}")
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        size = torch.empty((), dtype=dtype).element_size()
        head_dim, kv_heads = config.head_dim, config.num_key_value_heads
        self_layers = config.num_self_decoder_layers
        assert head_dim is not None
        assert kv_heads is not None
        assert self_layers is not None
        heads = config.num_attention_heads
        global_kv = 2 * kv_heads * head_dim * seq_len * size
        if config.self_decoder == "gret":
            per_sequence = self_layers * heads * head_dim * head_dim * 4
        else:
            window = min(config.sliding_window, seq_len)
            per_sequence = self_layers * 2 * window * heads * head_dim * size
        return batch_size * (global_kv + per_sequence)

    def __repr__(self) -> str:
        return (
            f"YocoCache(self_decoder={self.self_decoder!r}, layers={self.num_self_decoder_layers}, "
            f"seen_tokens={self.seen_tokens}, nbytes={self.nbytes()})"
        )
