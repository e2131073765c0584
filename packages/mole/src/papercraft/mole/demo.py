"""The laptop-scale MoLE experiment (``papercraft mole demo`` / ``papercraft demo``).

A tiny Llama is built from a config and taught the answer format; three LoRAs are trained with
peft on distinct synthetic tasks (:mod:`papercraft.mole.synthetic`); then, without task ids, MoLE
gates are trained on a mixed set, with and without the balance loss. The report gives the
teacher-forced exact match per task of every system (each LoRA alone, the ``cat`` merge, the
sum, MoLE), the gate entropy, and the accuracy on the kept tasks when one LoRA is masked out.
Everything is measured in the run; nothing is a published number.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.mole._version import __version__
from papercraft.mole.baselines import cat_merge, sum_merge
from papercraft.mole.config import MoleConfig
from papercraft.mole.train import gate_entropy, train_gates

__all__ = ["run_demo"]

SEQ_LEN = 16
EVAL_PER_TASK = 200


def _table(rows: list[dict[str, Any]], tasks: tuple[str, ...]) -> str:
    head = "| system | " + " | ".join(tasks) + " | mean |\n|---|" + "---:|" * (len(tasks) + 1)
    lines = [head]
    for row in rows:
        accs = [row["exact_match"][t] for t in tasks]
        cells = " | ".join(f"{a:.3f}" for a in accs)
        lines.append(f"| {row['system']} | {cells} | {sum(accs) / len(accs):.3f} |")
    return "\n".join(lines) + "\n"


def run_demo(output_dir: Path, *, quick: bool = False) -> dict[str, Any]:
    """Run the experiment, print its tables and write ``mole_demo.{json,md}`` under ``output_dir``.

    Args:
        output_dir (Path): directory for the report and the LoRAs; created if missing.
        quick (bool): far fewer steps and examples (a smoke run for tests). Default: False.

    Returns:
        dict[str, Any]: the report.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    from papercraft.mole.synthetic import (
        TASKS,
        TaskDataset,
        char_tokenizer,
        encode_examples,
        exact_match,
        make_examples,
        mixed_examples,
        pretrain_base,
        tiny_llama,
        train_lora,
    )

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(0)
    scale = 0.1 if quick else 1.0
    n_eval = 20 if quick else EVAL_PER_TASK
    tok = char_tokenizer()
    base = tiny_llama(tok, seed=0)
    pretrain_base(base, tokenizer=tok, seq_len=SEQ_LEN, quick=quick)
    adapters: dict[str, str] = {}
    for task in TASKS:
        train_set = make_examples(task, max(16, int(2000 * scale)), seed=1)
        lora = train_lora(base, train_set, tokenizer=tok, seq_len=SEQ_LEN, quick=quick)
        path = out / "loras" / task
        lora.save_pretrained(str(path))
        adapters[task] = str(path)
    tests = {t: make_examples(t, n_eval, seed=99) for t in TASKS}

    def scores(model: Any) -> dict[str, float]:
        model.eval()
        return {t: exact_match(model, tok, ex, seq_len=SEQ_LEN) for t, ex in tests.items()}

    from peft import PeftModel

    rows: list[dict[str, Any]] = [{"system": "base (no LoRA)", "exact_match": scores(base)}]
    for task in TASKS:
        single = PeftModel.from_pretrained(copy.deepcopy(base), adapters[task])
        rows.append({"system": f"LoRA {task} alone", "exact_match": scores(single)})
    rows.append(
        {
            "system": "cat merge (w = 1/N)",
            "exact_match": scores(cat_merge(copy.deepcopy(base), adapters)),
        }
    )
    rows.append({"system": "sum", "exact_match": scores(sum_merge(copy.deepcopy(base), adapters))})
    oracle = {
        t: next(r for r in rows if r["system"] == f"LoRA {t} alone")["exact_match"][t]
        for t in TASKS
    }
    rows.append({"system": "oracle (each task's own LoRA)", "exact_match": oracle})

    mixed = [(p, a) for _, p, a in mixed_examples(max(16, int(600 * scale)), seed=5)]
    dataset = TaskDataset(encode_examples(tok, mixed, seq_len=SEQ_LEN))
    probe = [(p, a) for _, p, a in mixed_examples(n_eval // 2, seed=77)]
    probe_enc = encode_examples(tok, probe, seq_len=SEQ_LEN)
    steps = 10 if quick else 300
    gates: dict[str, Any] = {}
    moles: dict[str, Any] = {}
    variants = (("hidden", 0.5), ("hidden", 0.0), ("lora_outputs", 0.5), ("lora_outputs", 0.0))
    for gate_input, coef in variants:
        label = f"MoLE ({'official' if gate_input == 'hidden' else 'paper'} gate input, α = {coef})"
        config = MoleConfig(
            adapters=adapters, granularity="layer", gate_input=gate_input,  # type: ignore[arg-type]
            seq_len=SEQ_LEN, balance_coef=coef,
        )  # fmt: skip
        mole, summary = train_gates(
            copy.deepcopy(base), config, dataset, output_dir=out / f"mole_{gate_input}_{coef}",
            steps=steps, learning_rate=5e-2, batch_size=32,
        )  # fmt: skip
        moles[label] = mole
        rows.append({"system": label, "exact_match": scores(mole)})
        with torch.no_grad():
            mole(input_ids=probe_enc["input_ids"], attention_mask=probe_enc["attention_mask"])
        per_sample = mole.last_gates()
        gates[label] = {
            "gate_input": gate_input,
            "balance_coef": coef,
            "mean_gate_entropy": gate_entropy({k: v.mean(0) for k, v in per_sample.items()}),
            "per_sample_gate_entropy": sum(
                gate_entropy({"s": row}) for v in per_sample.values() for row in v
            )
            / sum(v.shape[0] for v in per_sample.values()),
            "balance_loss_last": summary["balance_loss_last"],
        }
    mole = moles["MoLE (official gate input, α = 0.5)"]
    per_task: dict[str, torch.Tensor] = {}
    for task, examples in tests.items():
        enc = encode_examples(tok, examples, seq_len=SEQ_LEN)
        with torch.no_grad():
            mole(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        for unit, weights in mole.gate_weights().items():
            per_task[f"{task} inputs · {unit.removeprefix('base_model.model.model.')}"] = weights
    try:
        mole.plot_gate_weights(out / "mole_gates.png", per_task)
    except ImportError:
        print("(matplotlib is not installed: no gate plot)")
    masked_rows = []
    for dropped in TASKS:
        kept = [t for t in TASKS if t != dropped]
        mole.set_mask(kept)
        masked_rows.append({"system": f"MoLE, {dropped} masked", "exact_match": scores(mole)})
    mole.set_mask(None)
    report: dict[str, Any] = {
        "format": "papercraft.mole.demo",
        "format_version": 1,
        "version": __version__,
        "tasks": list(TASKS),
        "systems": rows,
        "masking": masked_rows,
        "gates": gates,
        "gate_weights_by_task": {k: [round(float(x), 4) for x in v] for k, v in per_task.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
    }
    text = (
        "### Teacher-forced exact match per task\n\n" + _table(rows, TASKS)
        + "\n### Masking one LoRA (MoLE, official gate input, α = 0.5)\n\n"
        + _table(masked_rows, TASKS)
        + "\n### Gate entropy on mixed held-out inputs (normalised; 1 = uniform)\n\n"
        "| system | entropy of the mean gate | mean per-sample entropy |\n|---|---:|---:|\n"
        + "".join(
            f"| {k} | {g['mean_gate_entropy']:.3f} | {g['per_sample_gate_entropy']:.3f} |\n"
            for k, g in gates.items()
        )
        + f"\n{report['seconds']} s on this machine.\n"
    )  # fmt: skip
    atomic_write_json(out / "mole_demo.json", report)
    atomic_write_text(out / "mole_demo.md", text)
    print(text)
    return report
