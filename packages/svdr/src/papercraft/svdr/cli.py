"""The ``papercraft svdr`` command: index, search, eval, train, synthetic, demo.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status: 0 done, 2 bad input) on the parsed namespace.

    papercraft svdr synthetic --out task/                     # a generated task to try it all on
    papercraft svdr train task/train.json --backbone MINILM --out run/ --max-steps 60
    papercraft svdr index task/beir --kind bag-of-tokens --model run/ --out bot/
    papercraft svdr search --index bot/ --model run/ --explain 5 "seat of government of X"
    papercraft svdr eval task/beir --model run/ --dense-model MINILM
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from papercraft.svdr._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-svdr"
_SUMMARY = "Semi-parametric vocabulary-disentangled retrieval (SVDR/SiDR) with a binary bag-of-tokens index"
_PAPER = "Semi-parametric Vocabulary Disentangled Retrieval (arXiv 2405.01924, https://arxiv.org/abs/2405.01924)"
_KINDS = ("bag-of-tokens", "embedding")
SYSTEMS = ("bm25", "bm25-wordpiece", "dense", "beta", "beta+rerank", "alpha", "parametric")
_DEFAULT_SYSTEMS = "bm25,dense,beta,beta+rerank,parametric"


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


def _fail(action: str, error: BaseException) -> int:
    print(f"papercraft svdr {action}: error: {error}", file=sys.stderr)
    return 2


def _guard(action: str, run: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ValueError, FileNotFoundError, FileExistsError, ImportError, RuntimeError) as error:
            return _fail(action, error)

    return handler


def _tokenizer_or_encoder(path: str) -> tuple[Any, Any]:
    """``(encoder or None, tokenizer)`` from an SVDR encoder/run folder or a tokenizer folder."""
    from transformers import AutoTokenizer

    from papercraft.svdr.model import MODEL_DIRNAME, load_encoder

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"--model: no folder {root}")
    if (root / "svdr.json").is_file() or (root / MODEL_DIRNAME / "svdr.json").is_file():
        return load_encoder(root)
    return None, AutoTokenizer.from_pretrained(root)


def _load_index(path: str, tokenizer: Any) -> Any:
    from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex, SparseIndex

    index = SparseIndex.load(path, tokenizer=tokenizer)
    assert isinstance(index, (BagOfTokensIndex, EmbeddingIndex))
    return index


# ------------------------------------------------------------------------------------------------
# Actions


def _index(args: argparse.Namespace) -> int:
    from papercraft.svdr.data import read_corpus
    from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex
    from papercraft.svdr.retriever import build_embedding_index, encode_texts

    out = Path(args.out)
    if out.exists() and not args.add and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it or --add")
    ids, texts = read_corpus(args.corpus)
    encoder, tokenizer = _tokenizer_or_encoder(args.model)
    if args.kind == "embedding" and encoder is None:
        raise ValueError("--kind embedding needs --model to be an SVDR encoder (or training run)")
    started = time.perf_counter()
    if args.add:
        index = _load_index(args.out, tokenizer)
        if isinstance(index, BagOfTokensIndex):
            index.add(texts, ids, tokenizer=tokenizer)
        else:
            index.add(encode_texts(encoder, tokenizer, texts, max_length=args.max_length), ids)
    elif args.kind == "bag-of-tokens":
        index = BagOfTokensIndex.build(
            texts, ids, tokenizer, max_length=args.max_length, progress=args.progress,
            num_workers=args.workers, batch_size=args.batch_size,
        )  # fmt: skip
    else:
        index = build_embedding_index(
            encoder, tokenizer, texts, ids, max_length=args.max_length,
            batch_size=args.batch_size, progress=args.progress,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    index.save(out)
    kind = "bag-of-tokens" if isinstance(index, BagOfTokensIndex) else "embedding"
    assert isinstance(index, (BagOfTokensIndex, EmbeddingIndex))
    print(
        json.dumps(
            {
                "index": str(out),
                "kind": kind,
                "documents": len(index),
                "added": len(ids) if args.add else None,
                "density": round(index.density, 6),
                "bytes": index.nbytes,
                "seconds": round(seconds, 3),
            }
        )
    )
    return 0


def _queries(args: argparse.Namespace) -> list[str]:
    queries = list(args.query)
    if args.queries:
        path = Path(args.queries)
        if not path.is_file():
            raise FileNotFoundError(f"--queries: no such file {path}")
        queries += [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        queries = [q for q in queries if q]
    if not queries:
        raise ValueError("give queries as arguments or with --queries FILE (one per line)")
    return queries


def _search(args: argparse.Namespace) -> int:
    from papercraft.svdr.data import read_corpus
    from papercraft.svdr.index import BagOfTokensIndex
    from papercraft.svdr.retriever import Retriever

    queries = _queries(args)
    encoder, tokenizer = _tokenizer_or_encoder(args.model)
    if encoder is None:
        raise ValueError("--model must be an SVDR encoder folder (or a training run folder)")
    index = _load_index(args.index, tokenizer)
    mode = args.mode or ("beta" if isinstance(index, BagOfTokensIndex) else "parametric")
    texts = None
    if args.corpus:
        ids, passages = read_corpus(args.corpus)
        texts = dict(zip(ids, passages, strict=True))
    elif args.rerank and isinstance(index, BagOfTokensIndex):
        raise ValueError("--rerank over a bag-of-tokens index needs --corpus (the passage texts)")
    retriever = Retriever(encoder, tokenizer, index, texts=texts, query_max_length=args.max_length)
    results = retriever.search(
        queries, args.k, mode=mode, rerank=args.rerank, explain=args.explain > 0
    )
    for query, hits in zip(queries, results, strict=True):
        if args.json:
            print(
                json.dumps(
                    {
                        "query": query,
                        "hits": [
                            {
                                "id": h.doc_id,
                                "score": h.score,
                                "explanation": h.explanation[: args.explain],
                            }
                            for h in hits
                        ],
                    }
                )
            )
            continue
        print(
            f"query: {query}  (mode {mode}{', rerank ' + str(args.rerank) if args.rerank else ''})"
        )
        for rank, hit in enumerate(hits, start=1):
            line = f"  {rank:>3}. {hit.doc_id:<20} {hit.score:10.4f}"
            if texts is not None:
                line += "  " + texts.get(hit.doc_id, "")[:80]
            print(line)
            if args.explain:
                parts = ", ".join(f"{t} {v:.3f}" for t, v in hit.explanation[: args.explain])
                print(f"       = {parts}{', …' if len(hit.explanation) > args.explain else ''}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from papercraft.svdr.baselines import BM25Index, DenseIndex
    from papercraft.svdr.data import read_beir
    from papercraft.svdr.evaluate import corpus_texts, evaluate_systems, svdr_searcher
    from papercraft.svdr.index import BagOfTokensIndex
    from papercraft.svdr.retriever import Retriever, build_embedding_index

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        raise ValueError(f"--systems must name some of {list(SYSTEMS)}, got {args.systems!r}")
    needs_model = {"beta", "beta+rerank", "alpha", "parametric"} & set(systems)
    if needs_model and not args.model:
        raise ValueError(f"--model (an SVDR encoder) is needed for {sorted(needs_model)}")
    if "dense" in systems and not args.dense_model:
        raise ValueError(
            "--dense-model (a local sentence-embedding model folder) is needed for dense"
        )
    data = read_beir(args.beir, args.split)
    ids, texts = corpus_texts(data)
    searchers: dict[str, Any] = {}
    builds: dict[str, float] = {}

    def timed(name: str, build: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        built = build()
        builds[name] = time.perf_counter() - started
        return built

    if needs_model:
        encoder, tokenizer = _tokenizer_or_encoder(args.model)
        if encoder is None:
            raise ValueError("--model must be an SVDR encoder folder (or a training run folder)")
        by_id = dict(zip(ids, texts, strict=True))
        if {"beta", "beta+rerank"} & set(systems):
            bot = timed(
                "bag-of-tokens",
                lambda: BagOfTokensIndex.build(texts, ids, tokenizer, max_length=args.max_length),
            )
            retriever = Retriever(encoder, tokenizer, bot, texts=by_id)
            if "beta" in systems:
                searchers["svdr beta (bag of tokens)"] = svdr_searcher(retriever, "beta")
            if "beta+rerank" in systems:
                searchers[f"svdr beta + rerank@{args.rerank}"] = svdr_searcher(
                    retriever, "beta", rerank=args.rerank
                )
        if {"alpha", "parametric"} & set(systems):
            emb = timed(
                "embedding",
                lambda: build_embedding_index(
                    encoder,
                    tokenizer,
                    texts,
                    ids,
                    max_length=args.max_length,
                    progress=args.progress,
                ),
            )
            retriever = Retriever(encoder, tokenizer, emb)
            if "parametric" in systems:
                searchers["svdr parametric (embedding)"] = svdr_searcher(retriever, "parametric")
            if "alpha" in systems:
                searchers["svdr alpha (embedding)"] = svdr_searcher(retriever, "alpha")
    if "bm25" in systems:
        searchers["bm25 (words)"] = timed(
            "bm25", lambda: BM25Index.build(texts, ids, stopwords="en", max_length=args.max_length)
        )
    if "bm25-wordpiece" in systems:
        _, wordpiece = _tokenizer_or_encoder(args.model) if args.model else (None, None)
        if wordpiece is None:
            raise ValueError("bm25-wordpiece needs --model (its tokenizer splits the texts)")
        searchers["bm25 (wordpieces)"] = timed(
            "bm25-wordpiece",
            lambda: BM25Index.build(texts, ids, tokenizer=wordpiece, max_length=args.max_length),
        )
    if "dense" in systems:
        searchers["dense (mean-pooled)"] = timed(
            "dense",
            lambda: DenseIndex.build(
                texts, ids, args.dense_model, max_length=args.max_length, progress=args.progress
            ),
        )
    k_values = tuple(k for k in (1, 5, 10, 20, 100) if k <= args.k)
    report = evaluate_systems(data, searchers, k=args.k, k_values=k_values)
    print(report.to_markdown())
    print("index build seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in builds.items()))
    if args.save:
        print(f"saved {report.save(args.save)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from papercraft.core.training import close_process_group, parse_overrides
    from papercraft.svdr.train import train

    overrides = parse_overrides(args.set)
    result = train(
        args.data,
        args.out,
        backbone=args.backbone,
        init_from=args.init_from,
        shared=args.shared,
        hard_negatives=args.hard_negatives,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        max_grad_norm=args.max_grad_norm,
        fp16=args.fp16,
        bf16=args.bf16,
        seed=args.seed,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        deepspeed=args.deepspeed,
        use_cpu=args.cpu or None,
        overwrite_output_dir=args.overwrite,
        resume_from_checkpoint=True if args.resume else None,
        training_args=overrides,
    )
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    close_process_group()  # while every rank is alive (gloo teardown otherwise races)
    if rank:
        return 0
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from papercraft.svdr.data import write_beir, write_dpr
    from papercraft.svdr.synthetic import make_country_task

    out = Path(args.out)
    task = make_country_task(args.train_countries, args.test_countries, seed=args.seed)
    write_beir(task.test, out / "beir", overwrite=args.overwrite)
    write_dpr(task.train, out / "train.json")
    print(
        f"wrote {out / 'train.json'} ({len(task.train)} training questions) and {out / 'beir'} "
        f"({len(task.test.corpus)} passages, {len(task.test.queries)} test questions)"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from papercraft.svdr.demo import run_demo

    run_demo(Path(args.output))
    return 0


# ------------------------------------------------------------------------------------------------
# Parser


def _add_index(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("index", help="build a bag-of-tokens or embedding index of a corpus")
    p.add_argument("corpus", help="a BEIR folder, a .jsonl (id/_id, title, text) or a DPR .tsv")
    p.add_argument("--out", required=True, help="the index folder to write")
    p.add_argument("--kind", choices=_KINDS, default="bag-of-tokens", help="(bag-of-tokens)")
    p.add_argument(
        "--model",
        required=True,
        help="an SVDR encoder or run folder (bag-of-tokens: any tokenizer)",
    )
    p.add_argument("--max-length", type=int, default=256, help="passage truncation (256)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per batch (32)")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (bag-of-tokens)")
    p.add_argument("--add", action="store_true", help="add the corpus to the existing --out index")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_guard("index", _index))


def _add_search(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("search", help="search an index; print hits and explanations")
    p.add_argument("query", nargs="*", help="query texts")
    p.add_argument("--queries", help="a file with one query per line")
    p.add_argument("--index", required=True, help="an index folder (papercraft svdr index)")
    p.add_argument("--model", required=True, help="the SVDR encoder or run folder")
    p.add_argument("--mode", choices=("beta", "alpha", "parametric"), help="(from the index)")
    p.add_argument("-k", "--k", type=int, default=10, help="hits per query (10)")
    p.add_argument("--rerank", type=int, help="re-score the top M parametrically")
    p.add_argument("--corpus", help="passage texts (needed to rerank a bag-of-tokens search)")
    p.add_argument("--explain", type=int, default=0, metavar="N", help="show N top tokens per hit")
    p.add_argument("--max-length", type=int, default=128, help="query token limit (128)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a listing")
    p.set_defaults(func=_guard("search", _search))


def _add_eval(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("eval", help="Recall@k, MRR@10, nDCG@10 on a BEIR folder, baselines too")
    p.add_argument("beir", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="qrels split (test)")
    p.add_argument("--model", help="the SVDR encoder or run folder")
    p.add_argument("--dense-model", help="a local sentence-embedding model (the dense baseline)")
    p.add_argument(
        "--systems", default=_DEFAULT_SYSTEMS, help=f"comma-separated, of {', '.join(SYSTEMS)}"
    )
    p.add_argument("-k", "--k", type=int, default=100, help="retrieval depth (100)")
    p.add_argument("--rerank", type=int, default=100, help="depth of beta+rerank (100)")
    p.add_argument("--max-length", type=int, default=256, help="passage truncation (256)")
    p.add_argument("--save", help="write the report as JSON here")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.set_defaults(func=_guard("eval", _eval))


def _add_train(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "train", help="train an encoder on DPR-format data (transformers Trainer; DDP/DeepSpeed)"
    )
    p.add_argument("data", nargs="+", help="DPR-format .json training files")
    p.add_argument("--out", required=True, help="the run folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--backbone", help="a local BERT-family model folder (a new encoder)")
    source.add_argument("--init-from", help="a saved SVDR encoder to continue from")
    p.add_argument("--shared", action="store_true", help="one tower for queries and passages")
    p.add_argument("--hard-negatives", type=int, default=1, help="per question (1)")
    p.add_argument("--query-max-length", type=int, default=128, help="(128)")
    p.add_argument("--passage-max-length", type=int, default=256, help="(256)")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs (paper: 80)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="questions per device (32)")
    p.add_argument("--lr", type=float, default=2e-5, help="AdamW peak rate (2e-5)")
    p.add_argument("--warmup", type=int, default=0, help="warm-up steps (0)")
    p.add_argument("--max-grad-norm", type=float, default=2.0, help="clipping (2.0)")
    p.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU)")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--save-steps", type=int, default=1000)
    p.add_argument("--deepspeed", help="a DeepSpeed JSON config")
    p.add_argument("--cpu", action="store_true", help="train on the CPU")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a TrainingArguments field")
    # torch.distributed launchers append --local_rank=N; the rank is read from the environment.
    p.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_guard("train", _train))


class Command:
    """Registers ``papercraft svdr`` and its actions on the core's argument parser."""

    name = "svdr"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``svdr`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="svdr_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)
        _add_index(actions)
        _add_search(actions)
        _add_eval(actions)
        _add_train(actions)
        synthetic = actions.add_parser(
            "synthetic", help="write the generated paraphrase task (DPR train + BEIR test)"
        )
        synthetic.add_argument("--out", required=True, help="folder for train.json and beir/")
        synthetic.add_argument("--train-countries", type=int, default=48)
        synthetic.add_argument("--test-countries", type=int, default=16)
        synthetic.add_argument("--seed", type=int, default=0)
        synthetic.add_argument("--overwrite", action="store_true", help="replace beir/ if present")
        synthetic.set_defaults(func=_guard("synthetic", _synthetic))
        demo = actions.add_parser("demo", help="the demo: both indexes, search, explain, table")
        demo.add_argument("--output", default="demo-output/svdr", help="(demo-output/svdr)")
        demo.set_defaults(func=_guard("demo", _demo))


command = Command()
