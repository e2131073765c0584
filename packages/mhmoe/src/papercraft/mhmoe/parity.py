"""Parameter and FLOPs accounting for (multi-head) MoE layers, and parity configurations.

The original MH-MoE paper (Wu et al., 2024, arXiv 2404.15045) compares MH-MoE and SMoE at equal
*parameters* only; the multi-head split then multiplies the expert FLOPs by the number of heads.
The follow-up (Huang et al., 2024, "MH-MoE: Multi-Head Mixture-of-Experts", arXiv 2411.16205,
"MH-v2") matches *parameters and FLOPs*. :func:`parity_config` makes that choice explicit with
``match="params"`` or ``match="params+flops"``.

Accounting (one MoE layer, per token; ``d`` model dim, ``h`` heads, ``k`` top-k, ``E`` experts,
``H`` expert hidden dim; SwiGLU experts have three ``(d/h) × H`` matrices):

- parameters: experts ``3·E·(d/h)·H``, router (softmax: ``(d/h)·E``; X-MoE: ``(d/h)·r + E·r`` for
  router dim ``r``), head and merge projections ``2·(d² + d)`` (``2·d²`` without bias).
- FLOPs: a matmul of an ``m``-vector by an ``m × n`` matrix costs ``2·m·n`` (multiply + add);
  element-wise work (SiLU, softmax, bias, the gate product) is not counted. A token becomes ``h``
  sub-tokens, each sent to ``k`` experts, so the experts cost ``h·k·3·2·(d/h)·H = 6·k·d·H``, the
  projections ``4·d²``, the router ``2·d·E`` (X-MoE: ``2·d·r + 2·h·r·E``). Capacity drops are not
  subtracted: this is the nominal (dropless) cost.

Why the MH-v2 numbers come out (baseline SMoE: top-1, 8 experts, SwiGLU ``d_moe = 2048``,
``d = 768``; MoE every second layer, which scales both sides equally and drops out):

1. *Top-k.* Each of the ``h`` sub-tokens gets the baseline's ``k_b`` experts, so ``k = h·k_b``:
   top-2 for ``h = 2``, top-3 for ``h = 3``.
2. *Hidden dim from FLOPs parity.* Equal FLOPs means ``6·k·d·H + 4·d² = 6·k_b·d·d_moe``, i.e.
   ``k·H = k_b·d_moe − 2d/3``: the head and merge layers (``4·d²``) cost as much as ``2d/3`` hidden
   units of a top-1 SwiGLU expert over the full width (``6·d`` per unit), and that much is taken
   off the total activated hidden width, which the ``k`` chosen experts then share. With
   ``d = 768`` the projections cost ``512`` hidden units: ``H = (2048 − 512)/2 = 768`` for
   ``h = 2`` and ``(2048 − 512)/3 = 512`` for ``h = 3``. (The shorthand ``d_mhmoe = d_moe − d/k``
   in the project's method notes does not reproduce these numbers; the rule above does — it is
   ``d_mhmoe = (d_moe − 2d/3)/k`` for a top-1 baseline.)
3. *Expert count from parameter parity.* Each expert now holds ``3·(d/h)·H`` weights (plus its
   router row), far fewer than the baseline's ``3·d·d_moe``, so more experts are needed to keep the
   total: ``E = (P_baseline − P_projections) / P_expert`` = ``41.3`` for ``h = 2`` and ``93.0`` for
   ``h = 3``. Rounding these to the nearest multiple of the baseline's expert count (8) gives the
   paper's 40 and 96 (our reading: the paper states the counts, not the rounding; a multiple of
   the baseline count also keeps expert-parallel sharding over the same devices even).
   ``expert_multiple`` controls the rounding (1 = nearest integer).

``match="params"`` (the paper's original comparison) keeps the baseline's experts and top-k and
widens each expert so that the parameters match; the FLOPs then grow about ``h``-fold, which
:func:`parity_table` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "MHV2_BASELINE",
    "ParityMatch",
    "config_flops",
    "config_params",
    "moe_layer_flops",
    "moe_layer_params",
    "parity_config",
    "parity_table",
]

ParityMatch = Literal["params", "params+flops"]

#: The SMoE baseline of MH-v2 (arXiv 2411.16205): ``d = 768``, 8 SwiGLU experts of hidden 2048,
#: top-1. :func:`parity_config` turns it into ``h=2``: 40 experts, top-2, ``H = 768`` and
#: ``h=3``: 96 experts, top-3, ``H = 512``.
MHV2_BASELINE: dict[str, int] = {
    "d_model": 768,
    "num_experts": 8,
    "top_k": 1,
    "expert_hidden": 2048,
}

_MATCHES = ("params", "params+flops")
_ROUTERS = ("softmax", "xmoe")


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_shape(
    d_model: int, num_experts: int, expert_hidden: int, num_heads: int, router: str, router_dim: int
) -> None:
    _check_positive_int("d_model", d_model)
    _check_positive_int("num_experts", num_experts)
    _check_positive_int("expert_hidden", expert_hidden)
    _check_positive_int("num_heads", num_heads)
    _check_positive_int("router_dim", router_dim)
    if d_model % num_heads != 0:
        raise ValueError(
            f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}"
        )
    if router not in _ROUTERS:
        raise ValueError(f"router must be one of {_ROUTERS}, got {router!r}")


def _uses_projection(num_heads: int, head_projection: bool | None) -> bool:
    return num_heads > 1 if head_projection is None else bool(head_projection)


def moe_layer_params(
    d_model: int,
    num_experts: int,
    expert_hidden: int,
    *,
    num_heads: int = 1,
    head_projection: bool | None = None,
    bias: bool = True,
    router: str = "softmax",
    router_dim: int = 16,
    expert_bias: bool = False,
) -> int:
    """Number of parameters of one (MH-)MoE layer with SwiGLU experts.

    Args:
        d_model (int): model dimension ``d``.
        num_experts (int): number of experts ``E``.
        expert_hidden (int): hidden dimension ``H`` of each SwiGLU expert.
        num_heads (int): MH-MoE heads ``h``; experts and router see ``d/h`` features. Default: 1
        head_projection (bool | None): count the ``d × d`` head and merge projections; None means
            "when ``num_heads > 1``", as :class:`~papercraft.mhmoe.layer.MHMoE` does. Default: None
        bias (bool): the projections carry a bias. Default: True
        router (str): ``"softmax"`` (a ``(d/h) × E`` linear map) or ``"xmoe"`` (a ``(d/h) × r``
            reduction plus ``E`` expert embeddings of dim ``r``). Default: "softmax"
        router_dim (int): X-MoE router dim ``r`` (ignored for ``"softmax"``). Default: 16
        expert_bias (bool): the experts' three projections carry biases. Default: False

    Returns:
        int: the parameter count.

    Raises:
        ValueError: if a size is not a positive int, ``d_model`` is not divisible by ``num_heads``
            or ``router`` is unknown.
    """
    _check_shape(d_model, num_experts, expert_hidden, num_heads, router, router_dim)
    sub_dim = d_model // num_heads
    per_expert = 3 * sub_dim * expert_hidden
    if expert_bias:
        per_expert += 2 * expert_hidden + sub_dim
    if router == "softmax":
        router_params = sub_dim * num_experts
    else:
        router_params = sub_dim * router_dim + num_experts * router_dim
    projections = 0
    if _uses_projection(num_heads, head_projection):
        projections = 2 * (d_model * d_model + (d_model if bias else 0))
    return num_experts * per_expert + router_params + projections


def moe_layer_flops(
    d_model: int,
    num_experts: int,
    expert_hidden: int,
    *,
    num_heads: int = 1,
    top_k: int = 1,
    head_projection: bool | None = None,
    router: str = "softmax",
    router_dim: int = 16,
) -> int:
    """Matmul FLOPs per token of one (MH-)MoE layer (``2·m·n`` per ``m × n`` matmul, dropless).

    The total is router + experts + head/merge projections; element-wise work is not counted
    (see the module docstring).

    Args:
        d_model (int): model dimension ``d``.
        num_experts (int): number of experts ``E``.
        expert_hidden (int): hidden dimension ``H`` of each SwiGLU expert.
        num_heads (int): MH-MoE heads ``h``. Default: 1
        top_k (int): experts per sub-token ``k``; at most ``num_experts``. Default: 1
        head_projection (bool | None): count the head and merge projections; None means "when
            ``num_heads > 1``". Default: None
        router (str): ``"softmax"`` or ``"xmoe"``. Default: "softmax"
        router_dim (int): X-MoE router dim ``r`` (ignored for ``"softmax"``). Default: 16

    Returns:
        int: FLOPs per token.

    Raises:
        ValueError: on a non-positive size, ``top_k > num_experts``, ``d_model`` not divisible by
            ``num_heads`` or an unknown ``router``.
    """
    _check_shape(d_model, num_experts, expert_hidden, num_heads, router, router_dim)
    _check_positive_int("top_k", top_k)
    if top_k > num_experts:
        raise ValueError(f"top_k must be <= num_experts={num_experts}, got {top_k}")
    experts = 6 * top_k * d_model * expert_hidden  # h sub-tokens · k experts · 3 matmuls (d/h × H)
    if router == "softmax":
        router_flops = 2 * d_model * num_experts  # h sub-tokens · (d/h × E)
    else:
        router_flops = 2 * d_model * router_dim + 2 * num_heads * router_dim * num_experts
    projections = 4 * d_model * d_model if _uses_projection(num_heads, head_projection) else 0
    return experts + router_flops + projections


# Keys of a layer config dict that the formulas read, with their defaults.
_FORMULA_DEFAULTS: dict[str, Any] = {
    "num_heads": 1,
    "head_projection": None,
    "bias": True,
    "router": "softmax",
    "router_dim": 16,
}


def _required(config: Mapping[str, Any], key: str, name: str) -> int:
    if key not in config:
        raise ValueError(f"{name} must have the key {key!r} (an int), got keys {sorted(config)}")
    return _check_positive_int(f"{name}[{key!r}]", config[key])


def _formula_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: config.get(key, default) for key, default in _FORMULA_DEFAULTS.items()}


def config_params(config: Mapping[str, Any]) -> int:
    """:func:`moe_layer_params` of a layer config (keyword arguments of ``MHMoE``).

    Args:
        config (Mapping[str, Any]): needs ``d_model``, ``num_experts`` and ``expert_hidden``;
            reads ``num_heads``, ``head_projection``, ``bias``, ``router``, ``router_dim`` when
            present. Default values as in :func:`moe_layer_params`.

    Returns:
        int: the parameter count.

    Raises:
        ValueError: if a required key is missing or a value is invalid.
    """
    return moe_layer_params(
        _required(config, "d_model", "config"),
        _required(config, "num_experts", "config"),
        _required(config, "expert_hidden", "config"),
        **_formula_kwargs(config),
    )


def config_flops(config: Mapping[str, Any]) -> int:
    """:func:`moe_layer_flops` of a layer config (keyword arguments of ``MHMoE``).

    Args:
        config (Mapping[str, Any]): needs ``d_model``, ``num_experts``, ``expert_hidden`` and
            ``top_k``; reads ``num_heads``, ``head_projection``, ``router``, ``router_dim``.

    Returns:
        int: FLOPs per token.

    Raises:
        ValueError: if a required key is missing or a value is invalid.
    """
    kwargs = _formula_kwargs(config)
    kwargs.pop("bias")
    return moe_layer_flops(
        _required(config, "d_model", "config"),
        _required(config, "num_experts", "config"),
        _required(config, "expert_hidden", "config"),
        top_k=_required(config, "top_k", "config"),
        **kwargs,
    )


def parity_config(
    baseline: Mapping[str, Any],
    num_heads: int,
    match: str = "params+flops",
    *,
    top_k: int | None = None,
    expert_multiple: int | None = None,
    hidden_multiple: int = 8,
) -> dict[str, Any]:
    """MH-MoE layer config with the parameters (and FLOPs) of an SMoE baseline.

    ``match="params+flops"`` (MH-v2, arXiv 2411.16205): ``top_k = h·k_b``; the expert hidden dim
    solves FLOPs parity, ``H = round((k_b·d_moe − 2d/3)/k)`` (without the ``2d/3`` term when
    ``head_projection`` is False); the expert count solves parameter parity and is rounded to the
    nearest multiple of ``expert_multiple``. ``match="params"`` (the original paper): experts and
    top-k as the baseline, ``H`` rounded so that the parameters match; FLOPs grow about ``h``-fold.
    The baseline ``{"d_model": 768, "num_experts": 8, "top_k": 1, "expert_hidden": 2048}`` gives
    ``h=2``: 40 experts, top-2, ``H=768``; ``h=3``: 96 experts, top-3, ``H=512``.

    Args:
        baseline (Mapping[str, Any]): SMoE layer config with ``d_model``, ``num_experts``,
            ``top_k`` and ``expert_hidden`` (ints); ``num_heads`` must be 1 when present. Other
            keys (``router``, ``capacity_factor``, …) are copied to the result.
        num_heads (int): MH-MoE heads ``h``; must divide ``d_model``.
        match (str): ``"params"`` or ``"params+flops"``. Default: "params+flops"
        top_k (int | None): override the MH-MoE top-k (``"params+flops"`` only; default
            ``h·k_b``, capped at the expert count). Default: None
        expert_multiple (int | None): round the expert count (``"params+flops"``) to a multiple
            of this; None means the baseline's expert count. Default: None
        hidden_multiple (int): round the expert hidden size to a multiple of this (8 keeps fp32
            and bf16 rows 16-byte aligned, which ``torch._grouped_mm`` needs: at ``H = 213`` the
            layer falls back to a padded bmm and runs ~1.7× slower on CPU), unless that moves
            ``H`` by more than 5 % (tiny layers keep the exact solution); 1 keeps the exact
            solution. Default: 8

    Returns:
        dict[str, Any]: keyword arguments for ``MHMoE`` (``d_model``, ``num_experts``,
        ``num_heads``, ``top_k``, ``expert_hidden``, ``head_projection`` plus copied keys).

    Raises:
        ValueError: on a malformed baseline, a bad ``num_heads``/``match``/``top_k``/
            ``expert_multiple``, or when the projections alone exceed the baseline's budget.
    """
    if not isinstance(baseline, Mapping):
        raise ValueError(f"baseline must be a mapping, got {type(baseline).__name__}")
    d = _required(baseline, "d_model", "baseline")
    base_experts = _required(baseline, "num_experts", "baseline")
    base_k = _required(baseline, "top_k", "baseline")
    d_moe = _required(baseline, "expert_hidden", "baseline")
    if baseline.get("num_heads", 1) != 1:
        raise ValueError(
            f"baseline['num_heads'] must be 1 (an SMoE baseline), got {baseline['num_heads']!r}"
        )
    _check_positive_int("num_heads", num_heads)
    if d % num_heads != 0:
        raise ValueError(
            f"num_heads must divide baseline['d_model']={d}, got num_heads={num_heads}"
        )
    if match not in _MATCHES:
        raise ValueError(f"match must be one of {_MATCHES}, got {match!r}")
    if top_k is not None and match == "params":
        raise ValueError("top_k can only be set with match='params+flops' ('params' keeps k_b)")
    if expert_multiple is not None:
        _check_positive_int("expert_multiple", expert_multiple)
    _check_positive_int("hidden_multiple", hidden_multiple)

    def rounded(h: float) -> int:
        if h < 1:
            return 0
        aligned = max(hidden_multiple, hidden_multiple * round(h / hidden_multiple))
        # tiny widths keep the exact solution: aligning must not cost parity (> 5 % of H)
        return aligned if abs(aligned - h) <= 0.05 * h else round(h)

    base = {**baseline, "num_heads": 1}
    base.setdefault("head_projection", False)
    target_params = config_params(base)

    config: dict[str, Any] = {key: value for key, value in baseline.items()}
    config["num_heads"] = num_heads
    config["head_projection"] = bool(baseline.get("head_projection") or num_heads > 1)
    projection_flops = 4 * d * d if config["head_projection"] else 0

    if match == "params":
        experts, k = base_experts, base_k
        # parameters are linear in H: P(H) = P(0) + slope·H
        p1 = config_params({**config, "num_experts": experts, "expert_hidden": 1})
        p2 = config_params({**config, "num_experts": experts, "expert_hidden": 2})
        slope = p2 - p1
        hidden = rounded((target_params - (p1 - slope)) / slope)
    else:
        k = base_k * num_heads if top_k is None else _check_positive_int("top_k", top_k)
        base_expert_flops = 6 * base_k * d * d_moe
        hidden = rounded((base_expert_flops - projection_flops) / (6 * k * d))
        if hidden >= 1:
            # parameters are linear in E once H is fixed: P(E) = P(0) + slope·E
            p1 = config_params({**config, "num_experts": 1, "expert_hidden": hidden})
            p2 = config_params({**config, "num_experts": 2, "expert_hidden": hidden})
            slope = p2 - p1
            exact = (target_params - (p1 - slope)) / slope
            multiple = base_experts if expert_multiple is None else expert_multiple
            experts = max(multiple, multiple * round(exact / multiple))
            if k > experts:
                k_text = "the default h·k_b" if top_k is None else f"top_k={top_k}"
                raise ValueError(
                    f"{k_text} = {k} exceeds the {experts} experts that match the parameters"
                )
    if hidden < 1:
        raise ValueError(
            f"the head/merge projections ({projection_flops} FLOPs per token) leave no budget "
            f"for the experts of baseline {dict(baseline)}; "
            "use a larger baseline or fewer heads"
        )
    config.update(num_experts=experts, top_k=k, expert_hidden=hidden)
    return config


def parity_table(
    baseline: Mapping[str, Any],
    num_heads: Sequence[int] = (2, 3),
    *,
    match: str | Sequence[str] = ("params", "params+flops"),
    expert_multiple: int | None = None,
) -> str:
    """Markdown table of the baseline and its MH-MoE parity configs: sizes, params, FLOPs, ratios.

    Args:
        baseline (Mapping[str, Any]): SMoE layer config, as for :func:`parity_config`.
        num_heads (Sequence[int]): head counts to list. Default: (2, 3)
        match (str | Sequence[str]): parity choice(s) to list per head count.
            Default: ("params", "params+flops")
        expert_multiple (int | None): as for :func:`parity_config`. Default: None

    Returns:
        str: a Markdown table (one row per config, the baseline first), ending with a newline.

    Raises:
        ValueError: on an invalid baseline, head count or match.
    """
    matches = [match] if isinstance(match, str) else list(match)
    if not matches:
        raise ValueError("match must name at least one parity choice, got an empty sequence")
    heads = list(num_heads)
    if not heads:
        raise ValueError("num_heads must list at least one head count, got an empty sequence")
    base = {**baseline, "num_heads": 1}
    base.setdefault("head_projection", False)
    base_params, base_flops = config_params(base), config_flops(base)
    rows = [("SMoE (baseline)", "-", base)]
    for h in heads:
        for m in matches:
            config = parity_config(baseline, h, m, expert_multiple=expert_multiple)
            rows.append((f"MH-MoE h={h}", m, config))
    lines = [
        "| model | match | heads | top-k | experts | expert hidden | params | params ratio "
        "| FLOPs/token | FLOPs ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m, config in rows:
        params, flops = config_params(config), config_flops(config)
        lines.append(
            f"| {name} | {m} | {config['num_heads']} | {config['top_k']} | "
            f"{config['num_experts']} | {config['expert_hidden']} | {params:,} | "
            f"{params / base_params:.3f} | {flops:,} | {flops / base_flops:.3f} |"
        )
    return "\n".join(lines) + "\n"
