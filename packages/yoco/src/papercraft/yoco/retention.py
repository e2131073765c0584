"""Gated retention (gRet), the self-decoder mixer of YOCO, in pure PyTorch.

Implements YOCO §2.2 ("Gated Retention", arXiv 2405.05254): with a per-token, per-head decay
``γ_t ∈ (0, 1]`` the state and output obey the recurrence (eq. 4)

    S_t = γ_t · S_{t-1} + k_tᵀ v_t,        o_t = q_t S_t,

which unrolls to the parallel form (eq. 3) ``O = (Q Kᵀ ⊙ D) V`` with the causal decay matrix
``D_ts = ∏_{r=s+1..t} γ_r`` for ``s <= t`` and 0 otherwise, and to the chunkwise form (eq. 5) that
splits the sequence into chunks of ``C`` tokens: inside a chunk the parallel form, across chunks the
recurrence on the carried state.

The functions here take ``log_decay = log γ`` (values ``<= 0``); the caller computes
``logsigmoid(x W_gt) / 16`` and scales ``k`` by ``head_dim ** -0.5`` itself, so nothing is scaled
here. Decay cumulative sums, the decay matrix and the state are always float32 (bf16 / fp16 inputs
are upcast); outputs come back in ``q``'s dtype.

Four entry points, all equivalent on the same inputs:

- :func:`retention_parallel` — ``O(T²)`` reference / short-sequence training form.
- :func:`retention_chunkwise` — ``O(T·C·D + T·D²)`` form for long prefill and training, the fast
  path at every length: segments of a few chunks, each a handful of batched matmuls (no Python
  loop over chunks or tokens), with temporaries small enough to stay in cache.
- :func:`retention_recurrent` — a loop over tokens (``O(T·D²)``), the decode reference.
- :func:`retention_step` — one decode token (``T == 1``) against a carried state.

Padding contract: a position with ``k = 0`` (or ``v = 0``) and ``log_decay = 0`` neither adds to
nor decays the state, so left padding that is masked this way leaves the state exactly as if the
padded tokens did not exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "retention_chunkwise",
    "retention_parallel",
    "retention_recurrent",
    "retention_step",
]

#: Default chunk length of :func:`retention_chunkwise`. 64 was the fastest of 16/32/64/128/256 on a
#: 2-core CPU at T = 16K, B = 1, H = 4, D = 64 (the official GPU kernel uses 256).
DEFAULT_CHUNK_SIZE = 64


# --------------------------------------------------------------------------------------------------
# validation


def _check_qkv(fn: str, q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor) -> None:
    """Check ranks, shapes and dtypes of ``q, k, v, log_decay`` before any heavy work."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{fn}: {name} must have rank 4 (batch, heads, time, head_dim), "
                f"got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {t.dtype}")
    if not isinstance(log_decay, Tensor):
        raise TypeError(f"{fn}: log_decay must be a torch.Tensor, got {type(log_decay).__name__}")
    if log_decay.dim() != 3:
        raise ValueError(
            f"{fn}: log_decay must have rank 3 (batch, heads, time), got shape "
            f"{tuple(log_decay.shape)}"
        )
    if not log_decay.is_floating_point():
        raise TypeError(f"{fn}: log_decay must be a floating-point tensor, got {log_decay.dtype}")
    if k.shape != q.shape:
        raise ValueError(
            f"{fn}: k must have the same shape as q (B, H, T, Dk) = {tuple(q.shape)}, "
            f"got {tuple(k.shape)}"
        )
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{fn}: v must have shape (B, H, T, Dv) with (B, H, T) = {tuple(q.shape[:3])} as q, "
            f"got {tuple(v.shape)}"
        )
    if log_decay.shape != q.shape[:3]:
        raise ValueError(
            f"{fn}: log_decay must have shape (B, H, T) = {tuple(q.shape[:3])}, "
            f"got {tuple(log_decay.shape)}"
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(
            f"{fn}: q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}"
        )
    devices = {q.device, k.device, v.device, log_decay.device}
    if len(devices) != 1:
        raise ValueError(
            f"{fn}: q, k, v and log_decay must be on one device, got {sorted(map(str, devices))}"
        )
    # A value check costs a device sync on accelerators; do it where it is free (CPU).
    if (
        log_decay.device.type == "cpu"
        and log_decay.numel() > 0
        and not torch.compiler.is_compiling()
        and bool((log_decay > 0).any())
    ):
        raise ValueError(
            f"{fn}: log_decay holds log γ and must be <= 0 everywhere, got a maximum of "
            f"{float(log_decay.max()):.4g}"
        )


def _check_state(fn: str, name: str, state: Tensor, q: Tensor, v: Tensor) -> None:
    """Check that ``state`` is a float32 ``(B, H, Dk, Dv)`` tensor matching ``q`` and ``v``."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(state).__name__}")
    batch, heads, _, dk = q.shape
    expected = (batch, heads, dk, v.shape[-1])
    if tuple(state.shape) != expected:
        raise ValueError(
            f"{fn}: {name} must have shape (B, H, Dk, Dv) = {expected}, got {tuple(state.shape)}"
        )
    if state.dtype != torch.float32:
        raise TypeError(
            f"{fn}: {name} must be float32 (the retention state is always kept in float32), "
            f"got {state.dtype}"
        )
    if state.device != q.device:
        raise ValueError(f"{fn}: {name} is on {state.device} but q is on {q.device}")


def _grad_needed(*tensors: Tensor) -> bool:
    """Whether autograd will record operations on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------------------
# parallel form (eq. 3)


def _lower_mask(n: int, diagonal: int, device: torch.device) -> Tensor:
    """Bool ``(n, n)`` mask, True where ``col <= row + diagonal``.

    Built on every call, never cached: a mask created under ``torch.inference_mode`` could not
    be saved for a later backward pass.
    """
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(diagonal)


def _decay_matrix_t(x: Tensor, *, inclusive: bool = False, in_place: bool = False) -> Tensor:
    """The transposed causal decay matrix ``out[..., j, i] = exp(Σ_{r=j+1..i} x_r)`` for ``j <= i``.

    With ``inclusive`` the sum runs over ``r = j..i``; entries with ``j > i`` are 0. With
    ``x = log γ`` the exclusive matrix is ``Dᵀ`` of YOCO eq. 3. Each entry is a segment sum,
    accumulated from only its own terms by a cumulative sum along a masked ``n×n`` copy of ``x``,
    not a difference ``G_i - G_j`` of one long cumulative sum, in which two large float32 numbers
    would lose the small gap that matters. The transposed layout makes that cumulative sum run
    along the contiguous last dimension (about 5x faster on CPU than down the rows).

    Args:
        x (Tensor): float32 ``(..., n)``, values ``<= 0``.
        inclusive (bool): include ``x_j`` itself in entry ``(j, i)``. Default: False.
        in_place (bool): work in place on the one fresh ``n×n`` buffer (autograd off).
            Default: False.

    Returns:
        Tensor: float32 ``(..., n, n)`` with values in ``[0, 1]``, zero below the diagonal.
    """
    n = x.shape[-1]
    # cols[..., j, i] = x_i where r = i counts for row j (i > j, or i >= j), else 0
    dropped = _lower_mask(n, -1 if inclusive else 0, x.device)
    cols = x.unsqueeze(-2).expand(*x.shape[:-1], n, n).masked_fill(dropped, 0.0)  # (..., n, n)
    if in_place:
        return cols.cumsum_(dim=-1).exp_().triu_()
    # below the diagonal the sums are empty (0): exp gives 1 there, zeroed by triu
    return cols.cumsum(dim=-1).exp().triu()


_F = TypeVar("_F", bound=Callable[..., Any])


def _without_autocast(fn: _F) -> _F:
    """Run a kernel with autocast off: it manages its own precision (fp32 decay and state), and
    under CPU/GPU autocast matmuls would otherwise receive mixed fp32/bf16 operands."""

    @functools.wraps(fn)
    def wrapper(q: Tensor, *args: Any, **kwargs: Any) -> Any:
        device_type = q.device.type if isinstance(q, Tensor) else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(q, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_without_autocast
def retention_parallel(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor) -> Tensor:
    """Gated retention, parallel form ``O = (Q Kᵀ ⊙ D) V`` (YOCO eq. 3).

    ``O(T²)`` time and memory: the reference form and the fastest for short training sequences.
    Starts from a zero state; use :func:`retention_chunkwise` to continue from a state.

    Args:
        q (Tensor): queries ``(B, H, T, Dk)``.
        k (Tensor): keys ``(B, H, T, Dk)``, already scaled by ``Dk ** -0.5`` by the caller.
        v (Tensor): values ``(B, H, T, Dv)``.
        log_decay (Tensor): ``log γ`` per token and head ``(B, H, T)``, values ``<= 0``.

    Returns:
        Tensor: outputs ``(B, H, T, Dv)`` in ``q``'s dtype (computed in float32).

    Raises:
        TypeError: a non-tensor or non-floating input, or q/k/v of different dtypes.
        ValueError: wrong ranks or shapes, mixed devices, or positive ``log_decay`` (CPU).
    """
    _check_qkv("retention_parallel", q, k, v, log_decay)
    in_place = not _grad_needed(q, k, v, log_decay)
    # transposed layout [j, i] throughout (key j, query i), see _decay_matrix_t
    decay_t = _decay_matrix_t(log_decay.float(), in_place=in_place)  # (B, H, T, T): Dᵀ
    scores_t = torch.matmul(k.float(), q.float().transpose(-1, -2))  # (B, H, T, T): k_j · q_i
    scores_t = scores_t.mul_(decay_t) if in_place else scores_t * decay_t
    return torch.matmul(scores_t.transpose(-1, -2), v.float()).to(q.dtype)  # (B, H, T, Dv)


# --------------------------------------------------------------------------------------------------
# chunkwise form (eq. 5)

#: Tokens processed per pass of the chunk kernel. Working in segments of this many tokens keeps
#: every temporary small (a few hundred KiB at H = 4, D = 64), so the elementwise passes run from
#: cache and the allocator reuses memory instead of page-faulting fresh blocks on every call.
_SEGMENT_TOKENS = 512

#: The factorized intra-chunk product ``(q_i e^{b_i}) · (k_j e^{-b_j})`` is used while the total
#: log-decay of every chunk in a segment stays above ``-_FACTORIZED_MAX_DECAY``: ``e^{±40}`` is far
#: from float32 overflow and denormals, and the rounding of the exponents costs at most ~40 ulp
#: (~2.4e-6 relative). Stronger decays use the exact decay matrix.
_FACTORIZED_MAX_DECAY = 40.0


@_without_autocast
def retention_chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Gated retention, chunkwise form (YOCO eq. 5): parallel inside chunks, recurrent across.

    With ``b`` the inclusive cumulative sum of ``log γ`` inside a chunk (float32, ``<= 0``) and
    ``S`` the state entering the chunk, a chunk's output is

        O = (Q Kᵀ ⊙ exp(b_i - b_j)[j <= i]) V + (Q ⊙ exp(b)) S,

    and the state leaving it is ``exp(b_last) S + (K ⊙ exp(b_last - b))ᵀ V``. Every decay is a
    difference inside one chunk, so the cumulative sums stay small and exact. The sequence is
    processed in segments of a few chunks; inside a segment all chunks' products run as batched
    matmuls and the states entering the chunks come from one small matmul with the chunk-level
    decay matrix, so there is no Python loop over chunks. On CPU, when the decay inside every
    chunk of a segment is moderate (total ``log γ >= -40``), ``exp(b_i - b_j)`` is factorized
    into ``exp(b_i) · exp(-b_j)`` folded into Q and K (no ``C×C`` decay matrix at all); stronger
    decays, and other devices, use the exact matrix.

    A length that ``chunk_size`` does not divide is padded at the end with ``k = v = 0`` and
    ``log γ = 0``, which leaves the carried state untouched; ``T`` smaller than ``chunk_size`` uses
    one chunk of length ``T``.

    Args:
        q (Tensor): queries ``(B, H, T, Dk)``.
        k (Tensor): keys ``(B, H, T, Dk)``, already scaled by the caller.
        v (Tensor): values ``(B, H, T, Dv)``.
        log_decay (Tensor): ``log γ`` ``(B, H, T)``, values ``<= 0``.
        chunk_size (int): tokens per chunk. Default: ``DEFAULT_CHUNK_SIZE`` (64).
        initial_state (Tensor | None): float32 state ``(B, H, Dk, Dv)`` before the first token;
            ``None`` means zeros. Default: None.
        output_final_state (bool): also return the float32 state after the last token.
            Default: False.

    Returns:
        tuple[Tensor, Tensor | None]: outputs ``(B, H, T, Dv)`` in ``q``'s dtype, and the final
        state ``(B, H, Dk, Dv)`` (float32) if ``output_final_state`` else ``None``.

    Raises:
        TypeError: bad input types or dtypes (see :func:`retention_parallel`), or a non-float32
            ``initial_state``.
        ValueError: bad shapes, ``chunk_size < 1``, or positive ``log_decay`` (CPU).
    """
    fn = "retention_chunkwise"
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{fn}: chunk_size must be a positive int, got {chunk_size!r}")
    _check_qkv(fn, q, k, v, log_decay)
    if initial_state is not None:
        _check_state(fn, "initial_state", initial_state, q, v)
    out, final = _chunkwise(
        q,
        k,
        v,
        log_decay,
        chunk_size=chunk_size,
        initial_state=initial_state,
        allow_factorized=q.device.type == "cpu",
    )
    return out, (final if output_final_state else None)


def _chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    chunk_size: int,
    initial_state: Tensor | None,
    allow_factorized: bool,
) -> tuple[Tensor, Tensor]:
    """Validated body of :func:`retention_chunkwise`; always returns the final state.

    Args:
        q (Tensor): ``(B, H, T, Dk)``.
        k (Tensor): ``(B, H, T, Dk)``.
        v (Tensor): ``(B, H, T, Dv)``.
        log_decay (Tensor): ``(B, H, T)``.
        chunk_size (int): tokens per chunk (>= 1).
        initial_state (Tensor | None): float32 ``(B, H, Dk, Dv)`` or ``None`` for zeros.
        allow_factorized (bool): permit the factorized intra-chunk product where the decay is
            moderate (checking it costs a host sync, so only CPU callers allow it).

    Returns:
        tuple[Tensor, Tensor]: outputs ``(B, H, T, Dv)`` in ``q``'s dtype and the final float32
        state ``(B, H, Dk, Dv)``.
    """
    batch, heads, length, dk = q.shape
    dv = v.shape[-1]
    state = (
        q.new_zeros(batch, heads, dk, dv, dtype=torch.float32)
        if initial_state is None
        else initial_state
    )
    if length == 0:
        return q.new_zeros(batch, heads, 0, dv), state.clone()

    size = min(chunk_size, length)
    seg_chunks = max(1, _SEGMENT_TOKENS // size)
    seg_tokens = seg_chunks * size
    track = _grad_needed(q, k, v, log_decay, state)

    pieces: list[Tensor] = []
    out = None if track else q.new_empty(batch, heads, length, dv)
    for t0 in range(0, length, seg_tokens):
        t1 = min(length, t0 + seg_tokens)
        n = -(-(t1 - t0) // size)
        pad = n * size - (t1 - t0)
        qs, ks, vs = q[:, :, t0:t1].float(), k[:, :, t0:t1].float(), v[:, :, t0:t1].float()
        gs = log_decay[:, :, t0:t1].float()
        if pad:
            # zero k/v and zero log γ on the tail padding: no contribution, no decay
            qs, ks, vs = (
                F.pad(qs, (0, 0, 0, pad)),
                F.pad(ks, (0, 0, 0, pad)),
                F.pad(vs, (0, 0, 0, pad)),
            )
            gs = F.pad(gs, (0, pad))
        o_seg, state = _chunk_segment(
            qs.view(batch, heads, n, size, dk),  # (B, H, n, C, Dk)
            ks.view(batch, heads, n, size, dk),  # (B, H, n, C, Dk)
            vs.view(batch, heads, n, size, dv),  # (B, H, n, C, Dv)
            gs.reshape(batch, heads, n, size),  # (B, H, n, C)
            state,
            allow_factorized=allow_factorized,
            in_place=not track,
        )
        o_seg = o_seg.view(batch, heads, n * size, dv)[:, :, : t1 - t0]  # (B, H, t1 - t0, Dv)
        if out is None:
            pieces.append(o_seg)
        else:
            out[:, :, t0:t1].copy_(o_seg)
    if out is None:
        out = torch.cat(pieces, dim=2).to(q.dtype)
    return out, state


def _chunk_segment(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    state: Tensor,
    *,
    allow_factorized: bool,
    in_place: bool,
) -> tuple[Tensor, Tensor]:
    """Retention over ``n`` consecutive chunks, starting from ``state``.

    Args:
        q (Tensor): float32 ``(B, H, n, C, Dk)``.
        k (Tensor): float32 ``(B, H, n, C, Dk)``.
        v (Tensor): float32 ``(B, H, n, C, Dv)``.
        log_decay (Tensor): float32 ``(B, H, n, C)``.
        state (Tensor): float32 ``(B, H, Dk, Dv)``, the state before the first chunk.
        allow_factorized (bool): permit the factorized intra-chunk product.
        in_place (bool): reuse temporaries in place (only when autograd is not recording).

    Returns:
        tuple[Tensor, Tensor]: float32 outputs ``(B, H, n, C, Dv)`` and the state after the last
        chunk ``(B, H, Dk, Dv)``.
    """
    batch, heads, n, size, dk = q.shape
    dv = v.shape[-1]
    rows = batch * heads * n  # every chunk of every head is one matrix of the batched matmuls
    b = log_decay.cumsum(dim=-1)  # (B, H, n, C), <= 0 and decreasing inside each chunk
    b_last = b[..., -1]  # (B, H, n), total log-decay of each chunk
    # q_i e^{b_i}: decayed from the chunk's start (it multiplies the entering state)
    q_decayed = (q * b.exp().unsqueeze(-1)).reshape(rows, size, dk)  # (BHn, C, Dk)
    v_rows = v.reshape(rows, size, dv)  # (BHn, C, Dv)

    factorized = allow_factorized and bool(b_last.min() >= -_FACTORIZED_MAX_DECAY)
    if factorized:
        # e^{b_i - b_j} = e^{b_i} e^{-b_j}: both factors folded into q and k, every exponent
        # bounded by _FACTORIZED_MAX_DECAY; the (unbounded) entries above the diagonal are
        # zeroed after the matmul
        k_grown = (k * b.neg().exp().unsqueeze(-1)).reshape(rows, size, dk)  # k_j e^{-b_j}
        scores = torch.bmm(q_decayed, k_grown.transpose(1, 2))  # (BHn, C, C)
        scores = scores.tril_() if in_place else scores.tril()
        # chunk contributions relative to the chunk's start; _chunk_states adds e^{b_last}
        contributions = torch.bmm(k_grown.transpose(1, 2), v_rows)  # (BHn, Dk, Dv)
    else:
        # exact decay matrix e^{Σ_{r=j+1..i} log γ_r} (exponents <= 0, zero above the diagonal)
        decay_t = _decay_matrix_t(log_decay, in_place=in_place).view(rows, size, size)
        # transposed scores [j, i] = k_j · q_i, like the decay matrix (BHn, C, C)
        scores_t = torch.bmm(k.reshape(rows, size, dk), q.reshape(rows, size, dk).transpose(1, 2))
        scores_t = scores_t.mul_(decay_t) if in_place else scores_t * decay_t
        scores = scores_t.transpose(1, 2)  # (BHn, C, C) [i, j], a view
        # k_j e^{b_last - b_j}: contributions decayed to the chunk's end; the exponent
        # Σ_{r>j} log γ_r is summed from the chunk's end, not taken as a difference
        to_end = F.pad(log_decay.flip(-1).cumsum(dim=-1)[..., :-1], (1, 0)).flip(-1)  # (B,H,n,C)
        k_to_end = (k * to_end.exp().unsqueeze(-1)).reshape(rows, size, dk)
        contributions = torch.bmm(k_to_end.transpose(1, 2), v_rows)  # (BHn, Dk, Dv)
    out = torch.bmm(scores, v_rows)  # (BHn, C, Dv), intra-chunk part

    entering, final = _chunk_states(
        contributions.view(batch, heads, n, dk, dv), b_last, state, from_start=factorized
    )
    # inter-chunk part: (Q ⊙ e^{b}) S_entering, one batched matmul over all chunks
    entering_rows = entering.view(rows, dk, dv)
    if in_place:
        out = out.baddbmm_(q_decayed, entering_rows)
    else:
        out = torch.baddbmm(out, q_decayed, entering_rows)
    return out.view(batch, heads, n, size, dv), final


def _chunk_states(
    contributions: Tensor, chunk_log_decay: Tensor, state: Tensor, *, from_start: bool
) -> tuple[Tensor, Tensor]:
    """States entering each of ``n`` chunks, and the state after the last one.

    With ``c_i`` the chunk's total log-decay, ``U_i`` its contribution decayed to its end and
    ``P_i = c_0 + … + c_{i-1}``, the recurrence ``S_{i+1} = e^{c_i} S_i + U_i`` unrolls to
    ``S_i = e^{P_i} S_in + Σ_{j<i} e^{P_i - P_{j+1}} U_j``: one ``n × (n+1)`` matmul against the
    stacked ``[S_in, U_0, …, U_{n-1}]`` with exponents ``<= 0``, exact segment sums of
    ``x = [0, c_0, …, c_{n-1}]``. Contributions given relative to the chunk's start
    (``from_start``: ``U_j = e^{c_j} U'_j``) just shift each exponent to an inclusive sum.

    Args:
        contributions (Tensor): float32 ``(B, H, n, Dk, Dv)``: ``U`` or, with ``from_start``,
            ``U'``.
        chunk_log_decay (Tensor): float32 ``c`` ``(B, H, n)``.
        state (Tensor): float32 ``S_in`` ``(B, H, Dk, Dv)``.
        from_start (bool): the contributions are decayed to their chunk's start, not its end.

    Returns:
        tuple[Tensor, Tensor]: entering states ``(B, H, n, Dk, Dv)`` (contiguous) and the final
        state ``(B, H, Dk, Dv)``.
    """
    batch, heads, n, dk, dv = contributions.shape
    x = F.pad(chunk_log_decay, (1, 0))  # (B, H, n + 1): [0, c_0, ..., c_{n-1}]
    weights = _decay_matrix_t(x, inclusive=from_start).transpose(-1, -2)[:, :, :n]  # (B,H,n,n+1)
    items = torch.cat([state.unsqueeze(2), contributions], dim=2)  # (B, H, n + 1, Dk, Dv)
    entering = torch.matmul(weights, items.view(batch, heads, n + 1, dk * dv))
    entering = entering.view(batch, heads, n, dk, dv)  # (B, H, n, Dk, Dv)
    last_decay = chunk_log_decay[:, :, -1].exp()[..., None, None]  # (B, H, 1, 1)
    if from_start:  # S_out = e^{c_last} (S_last + U'_last)
        final = (entering[:, :, -1] + contributions[:, :, -1]) * last_decay
    else:  # S_out = e^{c_last} S_last + U_last
        final = torch.addcmul(contributions[:, :, -1], entering[:, :, -1], last_decay)
    return entering, final


# --------------------------------------------------------------------------------------------------
# recurrent form (eq. 4)


def _step(
    state: Tensor, q_t: Tensor, k_t: Tensor, v_t: Tensor, decay_t: Tensor
) -> tuple[Tensor, Tensor]:
    """One recurrence step in float32: ``S = γ S + kᵀ v``, ``o = q S``.

    Args:
        state (Tensor): ``(B, H, Dk, Dv)`` float32.
        q_t (Tensor): ``(B, H, Dk)`` float32.
        k_t (Tensor): ``(B, H, Dk)`` float32.
        v_t (Tensor): ``(B, H, Dv)`` float32.
        decay_t (Tensor): ``γ_t`` ``(B, H)`` float32.

    Returns:
        tuple[Tensor, Tensor]: ``o_t`` ``(B, H, Dv)`` and the new state ``(B, H, Dk, Dv)``.
    """
    batch, heads, dk, dv = state.shape
    rows = batch * heads
    # a fresh contiguous tensor, so the in-place outer-product update never touches the caller's
    new_state = (state * decay_t[..., None, None]).contiguous()  # (B, H, Dk, Dv)
    new_state.view(rows, dk, dv).baddbmm_(k_t.reshape(rows, dk, 1), v_t.reshape(rows, 1, dv))
    o_t = torch.bmm(q_t.reshape(rows, 1, dk), new_state.view(rows, dk, dv))  # (BH, 1, Dv)
    return o_t.view(batch, heads, dv), new_state


@_without_autocast
def retention_recurrent(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, *, initial_state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Gated retention, recurrent form ``S_t = γ_t S_{t-1} + k_tᵀ v_t``, ``o_t = q_t S_t`` (eq. 4).

    A Python loop over tokens: the decode reference, slow for long sequences.

    Args:
        q (Tensor): queries ``(B, H, T, Dk)``.
        k (Tensor): keys ``(B, H, T, Dk)``, already scaled by the caller.
        v (Tensor): values ``(B, H, T, Dv)``.
        log_decay (Tensor): ``log γ`` ``(B, H, T)``, values ``<= 0``.
        initial_state (Tensor | None): float32 ``(B, H, Dk, Dv)``; ``None`` means zeros.
            Default: None.

    Returns:
        tuple[Tensor, Tensor]: outputs ``(B, H, T, Dv)`` in ``q``'s dtype and the float32 final
        state ``(B, H, Dk, Dv)``.

    Raises:
        TypeError: bad input types or dtypes, or a non-float32 ``initial_state``.
        ValueError: bad shapes or positive ``log_decay`` (CPU).
    """
    fn = "retention_recurrent"
    _check_qkv(fn, q, k, v, log_decay)
    if initial_state is not None:
        _check_state(fn, "initial_state", initial_state, q, v)
    batch, heads, length, dk = q.shape
    dv = v.shape[-1]
    state = (
        q.new_zeros(batch, heads, dk, dv, dtype=torch.float32)
        if initial_state is None
        else initial_state
    )
    qf, kf, vf = q.float(), k.float(), v.float()
    decay = log_decay.float().exp()  # (B, H, T)
    outs = []
    for t in range(length):
        o_t, state = _step(state, qf[:, :, t], kf[:, :, t], vf[:, :, t], decay[:, :, t])
        outs.append(o_t)
    if not outs:
        return q.new_zeros(batch, heads, 0, dv), state.clone()
    return torch.stack(outs, dim=2).to(q.dtype), state


@_without_autocast
def retention_step(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One decode token of gated retention: ``S' = γ S + kᵀ v``, ``o = q S'``.

    Args:
        q (Tensor): query ``(B, H, 1, Dk)``.
        k (Tensor): key ``(B, H, 1, Dk)``, already scaled by the caller.
        v (Tensor): value ``(B, H, 1, Dv)``.
        log_decay (Tensor): ``log γ`` ``(B, H, 1)``, values ``<= 0``.
        state (Tensor): float32 ``(B, H, Dk, Dv)``, the state after the previous token (not
            modified).

    Returns:
        tuple[Tensor, Tensor]: output ``(B, H, 1, Dv)`` in ``q``'s dtype and the new float32 state
        ``(B, H, Dk, Dv)``.

    Raises:
        TypeError: bad input types or dtypes, or a non-float32 ``state``.
        ValueError: bad shapes, ``T != 1``, or positive ``log_decay`` (CPU).
    """
    fn = "retention_step"
    _check_qkv(fn, q, k, v, log_decay)
    if q.shape[2] != 1:
        raise ValueError(
            f"{fn}: decodes exactly one token, so q must have T == 1, got shape {tuple(q.shape)}; "
            "use retention_chunkwise for several tokens"
        )
    _check_state(fn, "state", state, q, v)
    o_t, new_state = _step(
        state,
        q[:, :, 0].float(),
        k[:, :, 0].float(),
        v[:, :, 0].float(),
        log_decay[:, :, 0].float().exp(),
    )
    return o_t.unsqueeze(2).to(q.dtype), new_state
