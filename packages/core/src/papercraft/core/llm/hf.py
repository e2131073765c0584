"""``HFLanguageModel``: the ``LanguageModel`` protocol over a local transformers causal LM.

Conventions (those of lm-evaluation-harness's ``HFLM``):

- **Generation** runs in batches of ``batch_size`` prompts, longest first, padded on the LEFT by
  this module (the caller's tokenizer is never touched), and goes through ``model.generate`` with
  an explicit setting: greedy decoding when ``temperature == 0``, otherwise plain multinomial
  sampling at that temperature (``top_k=0``, ``top_p=1``, no repetition penalty), so the model's
  own ``generation_config`` cannot silently change what greedy or sampling means. Generation ends
  at the model's EOS, after ``max_new_tokens`` or when every row holds a stop string; the output is
  cut before the first stop string.
- **Log-likelihood** encodes context and continuation separately (without special tokens) and
  concatenates the ids, prefixed by BOS when the tokenizer adds BOS by default (or when the
  context is empty, so that the first continuation token has something to be predicted from).
  The score is ``Σ_t log p(x_t | x_<t)`` over the continuation tokens; ``is_greedy`` is
  ``argmax p(· | x_<t) == x_t`` at every one of them. Sequences longer than the model's window
  are truncated from the left.
- **Chat** renders each conversation with the tokenizer's chat template (with the generation
  prompt) when it has one; otherwise as plain text, one ``"{role}: {content}"`` line per message
  followed by a final ``"assistant:"`` line. List contents are joined with newlines; image parts
  are rejected (this backend is text-only).
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria

from papercraft.core.llm.base import (
    LoglikelihoodResult,
    Message,
    cut_at_stop,
    message_text,
    validate_conversations,
    validate_generate_args,
    validate_loglikelihood_args,
)

__all__ = ["HFLanguageModel"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class _StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains any of the stop strings."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], prompt_width: int
    ) -> None:
        self._tokenizer = tokenizer
        self._stop = list(stop)
        self._prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self._tokenizer.batch_decode(
            input_ids[:, self._prompt_width :], skip_special_tokens=True
        )
        done = [any(s in text for s in self._stop) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield order[start : start + size]


class HFLanguageModel:
    """A local transformers causal LM (plus its tokenizer) behind the ``LanguageModel`` protocol.

    The model is put in eval mode; all computation runs under ``torch.inference_mode`` on the
    device of the model's first parameter.

    Args:
        model (PreTrainedModel): a causal LM (anything ``AutoModelForCausalLM`` builds).
        tokenizer (PreTrainedTokenizerBase): its tokenizer. It is never modified.
        batch_size (int): prompts (or scored pairs) per forward batch. Default: 8
        max_length (int | None): longest token sequence the model may see; longer inputs are
            truncated from the left. None reads ``model.config.max_position_embeddings`` (no limit
            when the config has none). Default: None
        add_bos (bool | None): prefix every encoded prompt/context with the BOS token. None does
            what the tokenizer does by default (BOS if ``tokenizer("a")`` starts with it).
            Default: None
        seed (int | None): makes sampling (``temperature > 0``) reproducible: each sampling call
            draws its torch seed from a generator seeded with this, without touching the global
            RNG state. None samples from the global torch RNG. Default: None
        show_progress (bool): show a tqdm bar when a call needs more than one batch.
            Default: True

    Raises:
        TypeError: when model or tokenizer has the wrong type.
        ValueError: when batch_size or max_length is not a positive int.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        add_bos: bool | None = None,
        seed: int | None = None,
        show_progress: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "generate"):
            raise TypeError(
                f"model must be a transformers causal LM with .generate, got {type(model).__name__}"
            )
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(
                f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_length is None:
            window = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            max_length = window if isinstance(window, int) and window > 0 else None
        elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 or None, got {max_length!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress = show_progress
        self._seeds = random.Random(seed) if seed is not None else None

        bos = tokenizer.bos_token_id
        if add_bos is None:
            probe = tokenizer("a")["input_ids"]
            add_bos = bos is not None and len(probe) > 0 and probe[0] == bos
        if add_bos and bos is None:
            raise ValueError("add_bos=True but the tokenizer has no bos_token")
        self.add_bos = bool(add_bos)
        # Token that conditions an empty context (lm-eval's ``prefix_token_id``).
        prefix = bos if bos is not None else tokenizer.eos_token_id
        self._prefix_id: int | None = prefix
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self._eos_id: int | list[int] | None = (
            gen_eos if gen_eos is not None else tokenizer.eos_token_id
        )
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        self._pad_id: int = pad if pad is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> HFLanguageModel:
        """Load a causal LM and its tokenizer from local files (never remote code).

        Args:
            path (str | os.PathLike[str]): a local model directory (or the id of a model already
                in the local Hugging Face cache).
            device (str | torch.device | None): where to put the model. None picks ``cuda`` when
                available, else ``cpu``. Default: None
            dtype (str | torch.dtype | None): weight dtype (``"float32"``, ``"bfloat16"``,
                ``"float16"`` or a torch dtype). None keeps the checkpoint's dtype. Default: None
            **kwargs (Any): passed on to the constructor (``batch_size``, ``seed``, ...).

        Returns:
            HFLanguageModel: the wrapped model.

        Raises:
            ValueError: when dtype is not one of the supported names.
            FileNotFoundError: when no model can be loaded from ``path`` without the network.
        """
        torch_dtype: torch.dtype | None
        if dtype is None or isinstance(dtype, torch.dtype):
            torch_dtype = dtype
        elif isinstance(dtype, str) and dtype in _DTYPES:
            torch_dtype = _DTYPES[dtype]
        else:
            raise ValueError(
                f"dtype must be None, a torch.dtype or one of {sorted(_DTYPES)}, got {dtype!r}"
            )
        target = torch.device(device) if device is not None else None
        if target is None:
            target = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # transformers 5 renamed ``torch_dtype`` to ``dtype``.
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        load_kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(os.fspath(path), **load_kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                os.fspath(path), **load_kwargs, **({dtype_kw: torch_dtype} if torch_dtype else {})
            )
        except OSError as err:
            raise FileNotFoundError(
                f"could not load a causal LM and tokenizer from {os.fspath(path)!r} "
                f"with local files only: {err}"
            ) from err
        torch.nn.Module.to(model, target)
        return cls(model, tokenizer, **kwargs)

    # ------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        """torch.device: where inputs are placed (the device of the model's first parameter)."""
        return next(self.model.parameters()).device

    def _encode(self, text: str, *, with_bos: bool) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if with_bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids

    def _progress(self, total: int, desc: str) -> tqdm[Any] | None:
        if not self.show_progress or total <= self.batch_size:
            return None
        return tqdm(total=total, desc=desc, unit="item", leave=False)

    @contextlib.contextmanager
    def _sampling_rng(self, sampling: bool) -> Iterator[None]:
        """Seed torch's RNG for one sampling call without leaking the state change."""
        if not sampling or self._seeds is None:
            yield
            return
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self._seeds.randrange(2**63))
            yield

    # --------------------------------------------------------------- generation

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Continue each plain-text prompt (see the module docstring for the conventions).

        Args:
            prompts (Sequence[str]): plain-text prompts.
            max_new_tokens (int): at most this many new tokens per prompt (0 gives "").
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): cut each output before the first of these strings.
                Default: None

        Returns:
            list[str]: one completion per prompt, in input order.

        Raises:
            TypeError: when an argument has the wrong type.
            ValueError: when an argument is out of range, or max_new_tokens leaves no room for
                the prompt within ``max_length``.
        """
        validate_generate_args(prompts, max_new_tokens, temperature, stop)
        encoded = [self._encode(p, with_bos=self.add_bos) for p in prompts]
        return self._generate_ids(encoded, max_new_tokens, float(temperature), stop)

    def chat(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Generate the assistant's next message for each conversation.

        Uses the tokenizer's chat template when it has one, else the plain ``"role: content"``
        rendering described in the module docstring.

        Args:
            conversations (Sequence[list[Message]]): OpenAI-style message lists (text only).
            max_new_tokens (int): at most this many new tokens per reply.
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): stop strings. Default: None

        Returns:
            list[str]: one reply per conversation, in input order.

        Raises:
            TypeError: when an argument has the wrong type.
            ValueError: when a conversation is malformed or holds a non-text part.
        """
        validate_conversations(conversations, max_new_tokens, temperature, stop)
        encoded = [self._encode_chat(conv, i) for i, conv in enumerate(conversations)]
        return self._generate_ids(encoded, max_new_tokens, float(temperature), stop)

    def render_chat(self, conversation: list[Message]) -> str:
        """Render one conversation as the prompt text the model continues.

        Args:
            conversation (list[Message]): OpenAI-style messages (text only).

        Returns:
            str: the chat-template rendering with the generation prompt, or the plain
            ``"role: content"`` lines followed by ``"assistant:"`` when there is no template.

        Raises:
            ValueError: when the conversation is malformed or holds a non-text part.
        """
        validate_conversations([conversation], 0, 0.0, None)
        return self._render(conversation, 0)

    def _render(self, conversation: list[Message], index: int) -> str:
        messages = [
            {"role": m["role"], "content": message_text(m, where=f"conversations[{index}][{j}]")}
            for j, m in enumerate(conversation)
        ]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            if not isinstance(text, str):
                raise TypeError(
                    f"the tokenizer's chat template rendered {type(text).__name__}, expected str"
                )
            return text
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def _encode_chat(self, conversation: list[Message], index: int) -> list[int]:
        text = self._render(conversation, index)
        if getattr(self.tokenizer, "chat_template", None):
            # Templates write their own special tokens (BOS included) as text.
            return self._encode(text, with_bos=False)
        return self._encode(text, with_bos=self.add_bos)

    def _generate_ids(
        self,
        encoded: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
    ) -> list[str]:
        results = [""] * len(encoded)
        if max_new_tokens == 0 or not encoded:
            return results
        if self.max_length is not None:
            room = self.max_length - max_new_tokens
            if room < 1:
                raise ValueError(
                    f"max_new_tokens must be < max_length ({self.max_length}) to leave room "
                    f"for the prompt, got {max_new_tokens}"
                )
            if any(len(ids) > room for ids in encoded):
                warnings.warn(
                    f"prompts longer than {room} tokens are truncated from the left to fit "
                    f"max_length={self.max_length} with max_new_tokens={max_new_tokens}",
                    stacklevel=3,
                )
                encoded = [ids[-room:] for ids in encoded]
        if any(not ids for ids in encoded):
            if self._prefix_id is None:
                raise ValueError("an empty prompt needs a tokenizer with a bos or eos token")
            encoded = [ids or [self._prefix_id] for ids in encoded]

        sampling = temperature > 0.0
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampling,
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "min_new_tokens": 0,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._eos_id,
        }
        if sampling:
            options.update(temperature=temperature, top_k=0, top_p=1.0)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        bar = self._progress(len(encoded), "generate")
        device = self.device
        with self._sampling_rng(sampling), torch.inference_mode():
            for rows in _batches(order, self.batch_size):
                width = max(len(encoded[i]) for i in rows)
                input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):  # left padding: prompts end at the last column
                    n = len(encoded[i])
                    input_ids[r, width - n :] = torch.tensor(encoded[i], dtype=torch.long)
                    mask[r, width - n :] = 1
                criteria = [_StopOnStrings(self.tokenizer, stop, width)] if stop else []
                out = self.model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    stopping_criteria=transformers.StoppingCriteriaList(criteria),
                    **options,
                )
                texts = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
                for i, text in zip(rows, texts, strict=True):
                    results[i] = cut_at_stop(text, stop)
                if bar is not None:
                    bar.update(len(rows))
        if bar is not None:
            bar.close()
        return results

    # ----------------------------------------------------------- loglikelihood

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (conditioning prefix + context, continuation), as ``loglikelihood`` uses.

        Args:
            context (str): the conditioning text.
            continuation (str): the text to score (non-empty).

        Returns:
            tuple[list[int], list[int]]: the context ids (with BOS where it applies, never empty)
            and the continuation ids.

        Raises:
            ValueError: when the continuation encodes to no tokens, or an empty context cannot
                be conditioned (no bos/eos token).
        """
        cont = self._encode(continuation, with_bos=False)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        ctx = self._encode(context, with_bos=self.add_bos)
        if not ctx:
            if self._prefix_id is None:
                raise ValueError("an empty context needs a tokenizer with a bos or eos token")
            ctx = [self._prefix_id]
        return ctx, cont

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context (see the module docstring).

        Args:
            contexts (Sequence[str]): conditioning texts.
            continuations (Sequence[str]): texts to score, one per context, non-empty.

        Returns:
            list[LoglikelihoodResult]: one result per pair, in input order.

        Raises:
            TypeError: when an argument has the wrong type.
            ValueError: when the lengths differ, a continuation is empty, or a continuation
                alone is longer than ``max_length``.
        """
        validate_loglikelihood_args(contexts, continuations)
        pairs = [self.encode_pair(c, x) for c, x in zip(contexts, continuations, strict=True)]
        # Each item: the model input (all tokens but the last) and how many final targets to score.
        inputs: list[tuple[list[int], list[int]]] = []
        for i, (ctx, cont) in enumerate(pairs):
            full = ctx + cont
            if self.max_length is not None and len(full) - 1 > self.max_length:
                if len(cont) > self.max_length:
                    raise ValueError(
                        f"continuations[{i}] has {len(cont)} tokens, more than "
                        f"max_length={self.max_length}"
                    )
                full = full[-(self.max_length + 1) :]
            inputs.append((full[:-1], cont))
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i][0]))
        results: list[LoglikelihoodResult | None] = [None] * len(inputs)
        bar = self._progress(len(inputs), "loglikelihood")
        device = self.device
        with torch.inference_mode():
            for rows in _batches(order, self.batch_size):
                width = max(len(inputs[i][0]) for i in rows)
                input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):  # right padding: positions start at 0 in every row
                    n = len(inputs[i][0])
                    input_ids[r, :n] = torch.tensor(inputs[i][0], dtype=torch.long)
                    mask[r, :n] = 1
                logits = self.model(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device)
                ).logits  # (B, T, V)
                for r, i in enumerate(rows):
                    tokens, cont = inputs[i]
                    n, k = len(tokens), len(cont)
                    # Logits at positions n-k .. n-1 predict the k continuation tokens.
                    scores = torch.log_softmax(logits[r, n - k : n].float(), dim=-1)  # (k, V)
                    target = torch.tensor(cont, dtype=torch.long, device=scores.device)
                    logprob = scores.gather(-1, target[:, None]).sum().item()
                    greedy = bool((scores.argmax(dim=-1) == target).all().item())
                    results[i] = LoglikelihoodResult(
                        logprob=float(logprob), is_greedy=greedy, num_tokens=k
                    )
                if bar is not None:
                    bar.update(len(rows))
        if bar is not None:
            bar.close()
        return [r for r in results if r is not None]
