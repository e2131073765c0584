"""The ``attention`` entry point and backend selection.

Selection order (DESIGN.md rule 5):

1. an explicit ``backend=`` argument: used, or an error saying why it cannot run the inputs;
2. else the ``PAPERCRAFT_ATTENTION`` environment variable: used if it can run the inputs,
   otherwise a warning (once per backend and reason) and automatic selection;
3. else the registered backend with the highest priority that is available here, supports the
   inputs and is preferred for them (flash, xformers, blockwise for sliding windows over long
   key ranges, sdpa, eager).
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

from papercraft.core.attention import _inputs, _masks
from papercraft.core.attention._registry import (
    AttentionBackend,
    BackendUnavailableError,
    get_backend,
    list_backends,
)

__all__ = ["ATTENTION_ENV_VAR", "attention", "select_backend"]

ATTENTION_ENV_VAR = "PAPERCRAFT_ATTENTION"
"""Environment variable naming the backend to use when ``backend=`` is not given."""

_warned: set[tuple[str, str]] = set()


def _why_not(
    backend: AttentionBackend,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
    auto: bool,
) -> str | None:
    """None if ``backend`` can (and, for automatic selection, should) run the inputs."""
    available, reason = backend.is_available()
    if not available:
        return reason
    why = backend.supports(q, k, v, causal=causal, window=window, attn_mask=attn_mask)
    if why is None and auto and backend.auto_check is not None:
        why = backend.auto_check(q, k, v, causal=causal, window=window, attn_mask=attn_mask)
    return why


def _select(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
    backend: str | None,
) -> AttentionBackend:
    def why_not(candidate: AttentionBackend, auto: bool) -> str | None:
        return _why_not(
            candidate, q, k, v, causal=causal, window=window, attn_mask=attn_mask, auto=auto
        )

    if backend is not None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a backend name (str) or None, got {backend!r}")
        chosen = get_backend(backend)
        refusal = why_not(chosen, False)
        if refusal is not None:
            raise BackendUnavailableError(
                f"attention backend {backend!r} cannot run these inputs: {refusal}"
            )
        return chosen

    requested = os.environ.get(ATTENTION_ENV_VAR, "").strip()
    if requested and requested.lower() != "auto":
        try:
            chosen = get_backend(requested)
        except ValueError as exc:
            reason: str | None = str(exc)
        else:
            reason = why_not(chosen, False)
            if reason is None:
                return chosen
        key = (requested, str(reason))
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"{ATTENTION_ENV_VAR}={requested!r} cannot run these inputs ({reason}); "
                "falling back to automatic backend selection",
                RuntimeWarning,
                stacklevel=3,  # the caller of attention() / select_backend()
            )

    reasons = []
    for candidate in list_backends():
        refusal = why_not(candidate, True)
        if refusal is None:
            return candidate
        reasons.append(f"{candidate.name}: {refusal}")
    raise BackendUnavailableError(
        "no attention backend can run these inputs (" + "; ".join(reasons) + ")"
    )


def select_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    attn_mask: Tensor | None = None,
    backend: str | None = None,
) -> AttentionBackend:
    """The backend :func:`attention` would use for these inputs (nothing is computed).

    Args:
        q (Tensor): queries ``(B, H, T, D)``.
        k (Tensor): keys ``(B, H_kv, S, D)``.
        v (Tensor): values ``(B, H_kv, S, D)``.
        causal (bool): causal masking. Default: True.
        window (int | None): sliding-window size. Default: None.
        attn_mask (Tensor | None): boolean or additive mask. Default: None.
        backend (str | None): explicit backend name. Default: None (environment, then auto).

    Returns:
        AttentionBackend: the chosen backend.

    Raises:
        TypeError, ValueError: on invalid inputs (as :func:`attention`).
        BackendUnavailableError: if the explicit ``backend`` cannot run these inputs.
    """
    q, k, v = _inputs.check_qkv(q, k, v)
    _inputs.check_options(causal, window, None, dim=q.shape[-1])
    mask = _inputs.check_mask(attn_mask, q, k)
    return _select(q, k, v, causal=causal, window=window, attn_mask=mask, backend=backend)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    scale: float | None = None,
    attn_mask: Tensor | None = None,
    backend: str | None = None,
) -> Tensor:
    """Scaled dot-product attention over grouped-query heads, on the best available kernel.

    ``softmax(q kᵀ · scale + mask) v`` (Vaswani et al., 2017, Eq. 1) where query head ``n``
    attends with key/value head ``n // (H / H_kv)`` (GQA, Ainslie et al., 2023).

    Masking is bottom-right aligned: query ``i`` sits at position ``p = S - T + i``.

    - ``causal=True``: key ``j`` is visible when ``j <= p`` (a decode step, ``T = 1``, sees
      every key). With ``window=W``: ``p - W < j <= p``, the ``W`` most recent keys including
      its own.
    - ``causal=False``: every key is visible; with ``window=W`` a symmetric band
      ``|j - p| < W`` (``2W - 1`` keys), as flash-attn's ``window_size=(W - 1, W - 1)``.
    - ``attn_mask`` narrows this further: boolean (True = may attend) or additive float
      (``-inf`` hides), broadcastable to ``(B, H, T, S)``.

    A query that may attend to no key at all returns zeros, with zero gradients, on every
    backend.

    Args:
        q (Tensor): queries ``(B, H, T, D)``.
        k (Tensor): keys ``(B, H_kv, S, D)``; ``H`` must be a multiple of ``H_kv``.
        v (Tensor): values ``(B, H_kv, S, D)``.
        causal (bool): causal masking. Default: True.
        window (int | None): sliding-window size ``W >= 1``. Default: None (no window).
        scale (float | None): score scale. Default: None (``1 / sqrt(D)``).
        attn_mask (Tensor | None): boolean or additive mask broadcastable to
            ``(B, H, T, S)``. Default: None.
        backend (str | None): a registered backend name (``"eager"``, ``"sdpa"``,
            ``"blockwise"``, ``"flash"``, ``"xformers"``). Default: None, meaning the
            ``PAPERCRAFT_ATTENTION`` environment variable, else automatic selection.

    Returns:
        Tensor: ``(B, H, T, D)`` in the dtype of ``q``.

    Raises:
        TypeError: if an input has the wrong type (non-tensor, non-floating, non-bool causal).
        ValueError: on wrong shapes, mixed dtypes/devices, ``H`` not a multiple of ``H_kv``,
            ``window < 1``, a non-positive ``scale``, a mask that does not broadcast, or an
            unknown backend name.
        BackendUnavailableError: if the explicit ``backend`` cannot run these inputs.
    """
    q, k, v = _inputs.check_qkv(q, k, v)
    resolved_scale = _inputs.check_options(causal, window, scale, dim=q.shape[-1])
    mask = _inputs.check_mask(attn_mask, q, k)
    chosen = _select(q, k, v, causal=causal, window=window, attn_mask=mask, backend=backend)

    batch, heads, num_queries, dim = q.shape
    empty = _masks.leading_empty_rows(num_queries, k.shape[2], causal=causal, window=window)
    if empty:
        # leading queries that see no key by position alone (T > S): their output is zero and
        # the kernel only sees the rest; dropping them keeps the bottom-right alignment. The
        # last query (position S - 1) always sees key S - 1, so at least one row is kept.
        kept = slice(empty, None)
        out = chosen.forward(
            q[:, :, kept],
            k,
            v,
            causal=causal,
            window=window,
            scale=resolved_scale,
            attn_mask=None if mask is None else _masks.slice_mask(mask, kept, slice(None)),
        )
        zeros = out.new_zeros(batch, heads, empty, dim)
        return torch.cat([zeros, out], dim=2)
    return chosen.forward(
        q, k, v, causal=causal, window=window, scale=resolved_scale, attn_mask=mask
    )
