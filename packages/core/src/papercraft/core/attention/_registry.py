"""The one registry of attention backends (DESIGN.md rule 5: kernel dispatch lives in the core).

An :class:`AttentionBackend` is a small, frozen description of one kernel: its name, its
priority for automatic selection, a kernel function, an availability probe (is the library
installed, is there a device?) and a per-call support check (can it run *these* inputs?).
Optional libraries are never imported here; each backend's availability probe imports its
library lazily, the first time it is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

__all__ = [
    "AttentionBackend",
    "AttentionKernel",
    "BackendUnavailableError",
    "SupportCheck",
    "available_backends",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]


class AttentionKernel(Protocol):
    """Signature of a backend's kernel.

    The dispatcher calls it with validated inputs: ``q`` is ``(B, H, T, D)``, ``k`` and ``v``
    are ``(B, H_kv, S, D)`` with ``H % H_kv == 0``, all on one device with one floating dtype;
    ``scale`` is resolved; ``attn_mask`` is ``None`` or a 4-dim bool/floating tensor whose
    dims are each 1 or the matching size of ``(B, H, T, S)``. Query rows that can see no key
    by position alone (causal with ``T > S``) have already been removed by the dispatcher.
    """

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        causal: bool,
        window: int | None,
        scale: float,
        attn_mask: Tensor | None,
    ) -> Tensor: ...


class SupportCheck(Protocol):
    """Signature of a per-call check: ``None`` when the inputs can run, else the reason why not."""

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        causal: bool,
        window: int | None,
        attn_mask: Tensor | None,
    ) -> str | None: ...


class BackendUnavailableError(RuntimeError):
    """Raised when an explicitly requested attention backend cannot run the given inputs."""


def _always_available() -> tuple[bool, str]:
    return True, "available"


def _supports_everything(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
) -> str | None:
    return None


@dataclass(frozen=True)
class AttentionBackend:
    """Description of one attention kernel in the registry.

    Args:
        name (str): registry key, also the value accepted by ``attention(backend=...)`` and the
            ``PAPERCRAFT_ATTENTION`` environment variable.
        priority (int): automatic selection tries backends from the highest priority down.
        forward (AttentionKernel): the kernel (see :class:`AttentionKernel` for its contract).
        availability (Callable[[], tuple[bool, str]]): probe saying whether the backend can run
            on this machine at all, with a reason (``"flash-attn not installed"``).
            Default: always available.
        check (SupportCheck): per-call check returning ``None`` when the kernel can run these
            inputs, else a reason (``"needs CUDA tensors"``). Default: supports everything.
        auto_check (SupportCheck | None): extra condition applied only by automatic selection
            (the backend can run the inputs, but another backend is preferred for them).
            Default: None (no extra condition).
        description (str): one line for ``papercraft info``. Default: "".

    Raises:
        ValueError: if ``name`` is empty or contains whitespace.
        TypeError: if ``priority`` is not an int.
    """

    name: str
    priority: int
    forward: AttentionKernel
    availability: Callable[[], tuple[bool, str]] = field(default=_always_available)
    check: SupportCheck = field(default=_supports_everything)
    auto_check: SupportCheck | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"name must be a non-empty string without spaces, got {self.name!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(f"priority must be an int, got {self.priority!r}")

    def is_available(self) -> tuple[bool, str]:
        """Whether this backend can run on this machine, with the reason.

        Returns:
            tuple[bool, str]: ``(True, "available")`` or ``(False, reason)``.
        """
        return self.availability()

    def supports(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        causal: bool = True,
        window: int | None = None,
        attn_mask: Tensor | None = None,
    ) -> str | None:
        """Whether this backend can run these inputs (availability is not checked here).

        Args:
            q (Tensor): queries ``(B, H, T, D)``.
            k (Tensor): keys ``(B, H_kv, S, D)``.
            v (Tensor): values ``(B, H_kv, S, D)``.
            causal (bool): causal masking. Default: True.
            window (int | None): sliding-window size. Default: None.
            attn_mask (Tensor | None): extra mask. Default: None.

        Returns:
            str | None: ``None`` when supported, else the reason it is not.
        """
        return self.check(q, k, v, causal=causal, window=window, attn_mask=attn_mask)


_BACKENDS: dict[str, AttentionBackend] = {}


def register_backend(backend: AttentionBackend, *, replace: bool = False) -> AttentionBackend:
    """Add a backend to the registry.

    Args:
        backend (AttentionBackend): the backend to add.
        replace (bool): allow replacing a backend already registered under the same name.
            Default: False.

    Returns:
        AttentionBackend: ``backend``, so the call can be used as an expression.

    Raises:
        TypeError: if ``backend`` is not an :class:`AttentionBackend`.
        ValueError: if the name is taken and ``replace`` is False.
    """
    if not isinstance(backend, AttentionBackend):
        raise TypeError(f"backend must be an AttentionBackend, got {type(backend).__name__}")
    if backend.name in _BACKENDS and not replace:
        raise ValueError(
            f"an attention backend named {backend.name!r} is already registered; "
            "pass replace=True to override it"
        )
    _BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> AttentionBackend:
    """Remove a backend from the registry and return it.

    Args:
        name (str): the backend's name.

    Returns:
        AttentionBackend: the removed backend.

    Raises:
        ValueError: if no backend has that name.
    """
    backend = get_backend(name)
    del _BACKENDS[name]
    return backend


def get_backend(name: str) -> AttentionBackend:
    """Look up a registered backend by name.

    Args:
        name (str): the backend's name.

    Returns:
        AttentionBackend: the backend.

    Raises:
        ValueError: if no backend has that name (the message lists the registered names).
    """
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(repr(b.name) for b in list_backends())
        raise ValueError(f"unknown attention backend {name!r}; registered: {known}") from None


def list_backends() -> list[AttentionBackend]:
    """All registered backends, highest priority first (the order automatic selection tries).

    Returns:
        list[AttentionBackend]: the backends.
    """
    return sorted(_BACKENDS.values(), key=lambda b: (-b.priority, b.name))


def available_backends() -> dict[str, tuple[bool, str]]:
    """What is usable on this machine and why the others are not.

    Returns:
        dict[str, tuple[bool, str]]: name -> ``(available, reason)``, highest priority first,
        e.g. ``{"flash": (False, "flash-attn not installed"), ..., "eager": (True, "available")}``.
    """
    return {b.name: b.is_available() for b in list_backends()}
