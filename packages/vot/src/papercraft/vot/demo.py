"""The vot demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

It generates the whole benchmark, prints its counts next to the paper's (Table 4), renders one
map and one tiling board to PNG, and runs the reference responders through the evaluation
harness on every task: the oracle must score 100% with complete state tracking, the random and
perpendicular guessers their analytic baselines. It takes a few seconds on a 2-core CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.vot._version import __version__

__all__ = ["run_demo"]

_HEADLINE = {
    "route-planning": "success_rate",
    "next-step-prediction": "accuracy",
    "visual-tiling": "verbal_accuracy",
    "natural-language-navigation": "accuracy",
}


def _counts_table(instances: dict[str, list[Any]]) -> list[str]:
    from papercraft.vot.benchmark import PAPER_COUNTS
    from papercraft.vot.tiling import tiling_configurations

    lines = ["| task | level | ours | paper |", "|---|---|---|---|"]
    for task in ("route-planning", "next-step-prediction"):
        paper = PAPER_COUNTS[task]
        assert isinstance(paper, dict)
        for level in sorted(paper):
            ours = sum(1 for i in instances[task] if i.difficulty == level)
            lines.append(f"| {task} | {level} | {ours} | {paper[level]} |")
        lines.append(f"| {task} | all | {len(instances[task])} | {sum(paper.values())} |")
    configs = {k: len(tiling_configurations(k)) for k in (2, 3)}
    tiling = instances["visual-tiling"]
    for level in (2, 3):
        n = sum(1 for i in tiling if i.difficulty == level)
        lines.append(f"| visual-tiling | {level} | {configs[level]} boards, {n} questions | |")
    lines.append(
        f"| visual-tiling | all | {sum(configs.values())} boards, {len(tiling)} questions "
        "| 376 boards, 796 questions (31 + 32 sampled tilings) |"
    )
    lines.append(
        f"| natural-language-navigation | all | {len(instances['natural-language-navigation'])} | 200 |"
    )
    return lines


def run_demo(output_dir: Path) -> None:
    """Run the demo and write its tables and images under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's files; created if missing.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    from papercraft.vot.dataset import build_task
    from papercraft.vot.evaluate import METRICS, evaluate
    from papercraft.vot.navigation import all_maps
    from papercraft.vot.prompts import TASKS
    from papercraft.vot.render import save_grid_png
    from papercraft.vot.responders import OracleModel, PerpendicularModel, RandomModel
    from papercraft.vot.tiling import tiling_configurations

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    out = output_dir
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    instances = {task: build_task(task, images=False) for task in TASKS}
    built = time.perf_counter() - start
    counts = _counts_table(instances)
    print(f"VoT benchmark generated in {built:.1f} s (exact solvers, no sampling):")
    print("\n".join(counts))

    nav = all_maps(4)[5]
    map_png = save_grid_png(nav.grid, out / "vot_map_level4.png")
    board = tiling_configurations(2)[0].board_rows()
    board_png = save_grid_png(board, out / "vot_tiling_board.png")
    print(f"\nA level-4 map (route {', '.join(nav.directions)}), rendered to {map_png}:")
    print(nav.text())
    print(f"A level-2 tiling board, rendered to {board_png}:")
    print("\n".join(board))

    responders: dict[str, type[OracleModel | RandomModel]] = {
        "oracle": OracleModel,
        "random": RandomModel,
        "perpendicular": PerpendicularModel,
    }
    analytic = {"next-step-prediction": {"random": 0.25, "perpendicular": 0.5},
                "visual-tiling": {"random": 1 / 3, "perpendicular": 1 / 3},
                "natural-language-navigation": {"random": 1 / 9, "perpendicular": 1 / 9}}  # fmt: skip
    rows: list[dict[str, Any]] = []
    lines = ["| task | responder | metric | score [95% CI] | analytic | tracking complete |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for task in TASKS:
        metric = _HEADLINE[task]
        for name, cls in responders.items():
            result = evaluate(cls(instances[task]), task, "vot", instances=instances[task])
            overall = result.rows[-1]
            expected = 1.0 if name == "oracle" else analytic.get(task, {}).get(name)
            rows.append({"task": task, "responder": name, "metrics": {
                m: overall[m] for m in (*METRICS[task], "tracking_complete")}})  # fmt: skip
            lines.append(
                f"| {task} | {name} | {metric} | {100 * overall[metric]:.1f} "
                f"[{100 * overall[metric + '_low']:.1f}, {100 * overall[metric + '_high']:.1f}] | "
                + (f"{100 * expected:.1f}" if expected is not None else "–")
                + f" | {100 * overall['tracking_complete']:.0f}% |"
            )
    print("\nReference responders through evaluate() (setting: vot):")
    print("\n".join(lines))
    elapsed = time.perf_counter() - start
    report = {"package": "papercraft-vot", "version": __version__, "counts": counts,
              "scores": rows, "seconds": round(elapsed, 2)}  # fmt: skip
    atomic_write_json(out / "vot_demo.json", report)
    atomic_write_text(out / "vot_demo.md", "\n".join(counts) + "\n\n" + "\n".join(lines) + "\n")
    print(
        f"\nvot demo done in {elapsed:.1f} s; wrote {out / 'vot_demo.json'} and {out / 'vot_demo.md'}"
    )
