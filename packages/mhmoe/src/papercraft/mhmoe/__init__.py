"""papercraft.mhmoe — MH-MoE: a mixture-of-experts layer that routes sub-tokens of each token to experts.

Paper: Multi-Head Mixture-of-Experts (arXiv 2404.15045, https://arxiv.org/abs/2404.15045); FLOPs-matched
configurations from "MH-MoE: Multi-Head Mixture-of-Experts" (arXiv 2411.16205).

Importing the package registers ``MHMoEConfig`` (``model_type="papercraft_mhmoe"``) with
``AutoConfig`` and ``MHMoEForCausalLM`` with ``AutoModelForCausalLM`` / ``AutoModel``, so a saved
model loads with ``AutoModelForCausalLM.from_pretrained(path)`` and no remote code.
"""

from __future__ import annotations

from papercraft.mhmoe._version import __version__
from papercraft.mhmoe.configuration import MHMoEConfig
from papercraft.mhmoe.dispatch import DISPATCHERS, dispatch_dense, dispatch_grouped, dispatch_loop
from papercraft.mhmoe.experts import SwiGLUExperts
from papercraft.mhmoe.layer import MHMoE, MoEOutput, SparseMoE
from papercraft.mhmoe.modeling import MHMoEForCausalLM, MHMoEModel, register_auto_classes
from papercraft.mhmoe.parity import moe_layer_flops, moe_layer_params, parity_config, parity_table
from papercraft.mhmoe.routing import (
    Routing,
    TopKRouter,
    apply_capacity,
    expert_capacity,
    load_balancing_loss,
    router_z_loss,
)
from papercraft.mhmoe.stats import ExpertStats

__all__ = [
    "DISPATCHERS",
    "ExpertStats",
    "MHMoE",
    "MHMoEConfig",
    "MHMoEForCausalLM",
    "MHMoEModel",
    "MoEOutput",
    "Routing",
    "SparseMoE",
    "SwiGLUExperts",
    "TopKRouter",
    "__version__",
    "apply_capacity",
    "dispatch_dense",
    "dispatch_grouped",
    "dispatch_loop",
    "expert_capacity",
    "load_balancing_loss",
    "moe_layer_flops",
    "moe_layer_params",
    "parity_config",
    "parity_table",
    "register_auto_classes",
    "router_z_loss",
]
