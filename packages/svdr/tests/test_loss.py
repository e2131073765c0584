"""The semi-parametric loss against a hand computation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from papercraft.svdr.loss import semi_parametric_loss, symmetric_nll


def _ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(v) for v in row))


def test_symmetric_nll_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 0.0]])  # 2 positives, 1 hard negative
    s = (q @ p.T).tolist()  # [[1, 0, 2], [2, 2, 0]]
    per_query = (_ce(s[0], 0) + _ce(s[1], 1)) / 2
    cols = [[s[0][0], s[1][0]], [s[0][1], s[1][1]]]  # each positive against every query
    per_passage = (_ce(cols[0], 0) + _ce(cols[1], 1)) / 2
    assert symmetric_nll(q, p).item() == pytest.approx(per_query + per_passage, rel=1e-6)
    assert symmetric_nll(q, p, 0.5).item() == pytest.approx(
        symmetric_nll(q * 2, p).item(), rel=1e-6
    )


def test_duplicate_passages_are_not_negatives_of_their_own_query() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # passage 2 (query 1's hard negative) is the same text as query 0's positive (key 7)
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    keys = torch.tensor([7, 8, 7, 9])
    s = (q @ p.T).tolist()
    per_query = (_ce([s[0][0], s[0][1], s[0][3]], 0) + _ce(s[1], 1)) / 2  # copy left out of row 0
    cols = [[s[0][0], s[1][0]], [s[0][1], s[1][1]]]
    per_passage = (_ce(cols[0], 0) + _ce(cols[1], 1)) / 2
    got = symmetric_nll(q, p, keys=keys).item()
    assert got == pytest.approx(per_query + per_passage, rel=1e-6)
    assert symmetric_nll(q, p).item() > got  # unmasked, the copy counts against query 0
    # two queries with the same positive text: neither is the other's negative in either term
    both = symmetric_nll(q, p[:2], keys=torch.tensor([5, 5]))
    assert both.item() == pytest.approx(0.0, abs=1e-7)
    parts = semi_parametric_loss(q, p, (q > 0).float(), (p > 0).float(), k=1, passage_keys=keys)
    assert parts.q_bin_p == pytest.approx(
        symmetric_nll((q > 0).float(), p, keys=keys).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="passage_keys must be"):
        semi_parametric_loss(q, p, q, p, passage_keys=keys[:3])


def test_four_terms_and_gradients() -> None:
    torch.manual_seed(0)
    n, v = 3, 20
    q = torch.rand(n, v, requires_grad=True)
    p = torch.rand(2 * n, v, requires_grad=True)
    q_bin = (torch.rand(n, v) > 0.7).float()
    p_bin = (torch.rand(2 * n, v) > 0.7).float()
    parts = semi_parametric_loss(q, p, q_bin, p_bin, k=4)

    def topk_or_bin(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        keep = b.bool().clone()
        for row in range(x.shape[0]):
            keep[row, x[row].topk(4).indices] = True
        return x * keep

    want = [
        symmetric_nll(topk_or_bin(q, q_bin), p),
        symmetric_nll(q, topk_or_bin(p, p_bin)),
        symmetric_nll(q_bin, p),
        symmetric_nll(q, p_bin),
    ]
    got = [parts.q_topk_p, parts.q_p_topk, parts.q_bin_p, parts.q_p_bin]
    assert got == pytest.approx([w.item() for w in want], rel=1e-6)
    assert parts.loss.item() == pytest.approx(sum(got) / 4, rel=1e-6)
    parts.loss.backward()
    assert q.grad is not None
    assert p.grad is not None
    assert q.grad.abs().sum() > 0
    assert p.grad[n:].abs().sum() > 0


def test_shape_errors() -> None:
    q, p = torch.rand(2, 5), torch.rand(3, 5)
    with pytest.raises(ValueError, match=r"N·\(1\+h\)"):
        semi_parametric_loss(q, p, q, p)
    with pytest.raises(ValueError, match="temperature"):
        symmetric_nll(q, q, 0.0)


def _worker(rank: int, store: str, q: torch.Tensor, p: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    # a file store: no TCP port to race for
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        n = q.shape[0] // 2
        mine = slice(rank * n, (rank + 1) * n)
        q_local = q[mine].clone().requires_grad_()
        # local passages: this rank's positives, then its hard negatives
        p_local = torch.cat([p[: 2 * n][mine], p[2 * n :][mine]]).clone().requires_grad_()
        qb, pb = (q_local > 0.6).float(), (p_local > 0.6).float()
        parts = semi_parametric_loss(q_local, p_local, qb, pb, k=3)
        parts.loss.backward()
        torch.save({"loss": parts.loss.detach()}, f"{out}.{rank}")
        dist.barrier()  # both ranks done with the backward collectives before teardown
    finally:
        dist.destroy_process_group()


def test_gathered_loss_equals_one_process_on_the_whole_batch(
    tmp_path: Path,
) -> None:
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    q, p = torch.rand(4, 12), torch.rand(8, 12)  # 4 queries; 4 positives then 4 hard negatives
    out = str(tmp_path) + "/loss"
    mp.spawn(_worker, args=(str(tmp_path) + "/store", q, p, out), nprocs=2, join=True)
    whole = semi_parametric_loss(q, p, (q > 0.6).float(), (p > 0.6).float(), k=3).loss
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)["loss"]
        assert got.item() == pytest.approx(whole.item(), rel=1e-6)
