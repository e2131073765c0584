"""Tests for papercraft.vot.nlnav (natural-language navigation, SpatialEvalLLM ``square.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from papercraft.vot.nlnav import (
    MOVES,
    NLNavInstance,
    answer_matches,
    describe_snake_grid,
    describe_walk,
    generate_nl_navigation,
    load_labels,
    sample_walk,
    snake_order,
)

# A hand-built 3×3 map whose snake order reads the labels 0..8: grid[x][y].
HAND_LABELS = [
    "apple",
    "unicorn",
    "cat",
    "egg",
    "dog",
    "umbrella",
    "hourglass",
    "ice cream",
    "banana",
]
HAND_GRID = ((0, 5, 6), (1, 4, 7), (2, 3, 8))


def _official(
    seed: int, size: int, steps: int, n: int, labels: list[str], with_coord: bool
) -> list[dict[str, Any]]:
    """Independent re-implementation following the official ``square.py`` code path literally.

    ``np.random.seed(seed)`` + global functions is the stream of ``RandomState(seed)``; the
    same calls are made in the same order (``shuffle``, ``choice(range(size-1), 1)`` twice,
    ``choice(range(4), p=p_dist)``...). The two ``special_order`` crashes are fixed the obvious
    way (pass ``with_coord``, take the string out of the returned tuple).
    """
    import inflect

    article = inflect.engine()
    rs = np.random.RandomState(seed)
    samples = []
    for _ in range(n):
        # generate_map('square', size, len(labels))
        arr = np.arange(len(labels))
        rs.shuffle(arr)
        mat = np.empty([size, size], dtype=int)
        for i in range(size):
            for j in range(size):
                mat[i, j] = arr[i * size + j]
        # sample_neighbor(mat.copy(), size, steps)
        work = mat.copy()
        start = (rs.choice(range(size - 1), 1)[0], rs.choice(range(size - 1), 1)[0])
        commands = [(0, 1), (1, 0), (0, -1), (-1, 0)]
        moves = ["up", "right", "down", "left"]
        pdists = {
            (0, 1): [0.33, 0.33, 0.01, 0.33],
            (1, 0): [0.33, 0.33, 0.33, 0.01],
            (0, -1): [0.01, 0.33, 0.33, 0.33],
            (-1, 0): [0.33, 0.01, 0.33, 0.33],
        }
        p_dist = [0.25, 0.25, 0.25, 0.25]
        prev = start
        names = [mat[start[0], start[1]]]
        work[start[0], start[1]] = -1
        directions = []
        step = 0
        while step < steps:
            ind = rs.choice(range(4), p=p_dist)
            command = commands[ind]
            pos = (prev[0] + command[0], prev[1] + command[1])
            if 0 <= pos[0] < size and 0 <= pos[1] < size:
                directions.append(moves[ind])
                names.append(mat[pos[0], pos[1]])
                p_dist = pdists[command]
                if work[pos[0], pos[1]] == -1:
                    break
                work[pos[0], pos[1]] = -1
                prev = pos
                step += 1
        # snake_grid(mat, size, labels, with_coord)
        txt = f"You have been given a {size} by {size} square grid. "
        txt += "Starting from a vertex, you will move along the edges of the grid. "
        txt += "Initially, you are positioned at the bottom-left corner of the grid, "
        order = []
        for i in range(size):
            if i % 2 == 0:
                for j in range(size - 1):
                    order.append(int(mat[j][i]))
                    where = f" at index ({j + 1},{i + 1})" if with_coord else ""
                    txt += f"where you will find {article.a(labels[mat[j][i]])}{where}, "
                    txt += "then you go right, "
                order.append(int(mat[size - 1][i]))
                where = f" at index ({size},{i + 1})" if with_coord else ""
                txt += f"where you will find {article.a(labels[mat[size - 1][i]])}{where}. "
            else:
                for j in reversed(range(1, size)):
                    order.append(int(mat[j][i]))
                    where = f" at index ({j + 1},{i + 1})" if with_coord else ""
                    txt += f"where you will find {article.a(labels[mat[j][i]])}{where}, "
                    txt += "then you go left, "
                order.append(int(mat[0][i]))
                where = f" at index (1,{i + 1})" if with_coord else ""
                txt += f"where you will find {article.a(labels[mat[0][i]])}{where}. "
            if i < size - 1:
                txt += "Then you go up, "
        txt += "Now you have all the information on the map. "
        # path2language(names, directions, labels)
        walk = f"You start at the position where the {labels[names[0]]} is located, "
        if len(directions) == 1:
            walk += f"then you go {directions[0]} by one step. "
        else:
            for d in directions[:-1]:
                walk += f"then you go {d} by one step, "
            walk += f"and then you go {directions[-1]} by one step. "
        walk += "What will you find?"
        samples.append(
            {
                "question": txt + walk,
                "answer": f"{labels[names[-1]]}.",
                "names": [int(v) for v in names],
                "directions": directions,
                "struct": mat.tolist(),
                "temporal_order": order,
            }
        )
    return samples


@pytest.mark.parametrize(
    ("seed", "size", "steps", "with_coord"),
    [(3, 3, 8, False), (0, 3, 8, False), (3, 3, 8, True), (8, 4, 8, False), (5, 2, 3, False)],
)
def test_matches_official_code_path(seed: int, size: int, steps: int, with_coord: bool) -> None:
    labels = load_labels()
    ours = generate_nl_navigation(
        20, size=size, steps=steps, seed=seed, with_coordinates=with_coord
    )
    ref = _official(seed, size, steps, 20, labels, with_coord)
    for inst, expected in zip(ours, ref, strict=True):
        assert inst.question == expected["question"]
        assert f"{inst.answer}." == expected["answer"]
        assert list(inst.directions) == expected["directions"]
        assert [inst.grid[x][y] for x, y in inst.path] == expected["names"]
        assert inst.to_record() == {k: expected[k] for k in inst.to_record()}


def test_defaults_are_the_vot_setting() -> None:
    data = generate_nl_navigation()
    assert len(data) == 200
    assert {inst.size for inst in data} == {3}
    assert data[:20] == generate_nl_navigation(20, size=3, steps=8, seed=8)


def test_deterministic_and_seed_dependent() -> None:
    a = generate_nl_navigation(30, size=3, seed=11)
    assert a == generate_nl_navigation(30, size=3, seed=11)
    assert a != generate_nl_navigation(30, size=3, seed=12)


@pytest.mark.parametrize(("size", "steps"), [(2, 1), (2, 5), (3, 8), (4, 3), (5, 12)])
def test_walks_are_valid_and_answers_solve(size: int, steps: int) -> None:
    for inst in generate_nl_navigation(60, size=size, steps=steps, seed=size * 100 + steps):
        assert inst.answer == inst.solve()
        assert inst.start == inst.path[0]
        assert 0 <= inst.start[0] < size - 1
        assert 0 <= inst.start[1] < size - 1
        assert 1 <= len(inst.directions) == len(inst.path) - 1 <= steps
        for (x0, y0), (x1, y1), d in zip(
            inst.path[:-1], inst.path[1:], inst.directions, strict=True
        ):
            assert (x1 - x0, y1 - y0) == MOVES[d]
            assert 0 <= x1 < size
            assert 0 <= y1 < size
        *before, last = inst.path
        assert len(set(before)) == len(before)  # no revisit before the last cell
        if last not in before:
            assert len(inst.directions) == steps  # otherwise the walk stopped at a revisit
        assert inst.answer == inst.object_at(*last)
        assert sorted(inst.objects) == sorted(
            inst.object_at(x, y) for x in range(size) for y in range(size)
        )


def test_snake_order() -> None:
    assert snake_order(3) == [
        (0, 0),
        (1, 0),
        (2, 0),
        (2, 1),
        (1, 1),
        (0, 1),
        (0, 2),
        (1, 2),
        (2, 2),
    ]
    assert snake_order(1) == [(0, 0)]


def test_hand_checked_description() -> None:
    assert describe_snake_grid(HAND_GRID, HAND_LABELS) == (
        "You have been given a 3 by 3 square grid. Starting from a vertex, you will move along "
        "the edges of the grid. Initially, you are positioned at the bottom-left corner of the "
        "grid, where you will find an apple, then you go right, where you will find a unicorn, "
        "then you go right, where you will find a cat. Then you go up, where you will find an "
        "egg, then you go left, where you will find a dog, then you go left, where you will find "
        "an umbrella. Then you go up, where you will find an hourglass, then you go right, where "
        "you will find an ice cream, then you go right, where you will find a banana. Now you "
        "have all the information on the map. "
    )
    with_coords = describe_snake_grid(HAND_GRID, HAND_LABELS, with_coordinates=True)
    assert "where you will find an apple at index (1,1), then you go right, " in with_coords
    assert "where you will find an egg at index (3,2), then you go left, " in with_coords
    assert "where you will find an umbrella at index (1,2). Then you go up, " in with_coords
    assert with_coords.endswith(
        "where you will find a banana at index (3,3). Now you have all the information on the map. "
    )


def test_hand_checked_walk_text() -> None:
    assert describe_walk("dog", ["up", "left", "down", "right"]) == (
        "You start at the position where the dog is located, then you go up by one step, then "
        "you go left by one step, then you go down by one step, and then you go right by one "
        "step. What will you find?"
    )
    assert describe_walk("dog", ["up"]) == (
        "You start at the position where the dog is located, then you go up by one step. "
        "What will you find?"
    )


def test_instance_helpers_on_a_hand_built_instance() -> None:
    inst = NLNavInstance(
        size=3,
        grid=HAND_GRID,
        objects=tuple(HAND_LABELS),
        start=(1, 1),
        path=((1, 1), (1, 2), (0, 2), (0, 1), (1, 1)),
        directions=("up", "left", "down", "right"),
        question=describe_snake_grid(HAND_GRID, HAND_LABELS)
        + describe_walk("dog", ["up", "left", "down", "right"]),
        answer="dog",
    )
    assert inst.solve() == "dog"
    assert inst.object_at(2, 1) == "egg"
    assert inst.object_at(0, 2) == "hourglass"
    assert inst.description == describe_snake_grid(HAND_GRID, HAND_LABELS)
    assert inst.grid_text() == (
        "hourglass | ice cream | banana\numbrella | dog | egg\napple | unicorn | cat"
    )
    assert inst.to_record()["temporal_order"] == list(range(9))
    assert inst.to_record()["answer"] == "dog."
    with pytest.raises(ValueError, match="outside"):
        inst.object_at(3, 0)


def test_custom_labels_and_coordinates() -> None:
    data = generate_nl_navigation(10, size=3, seed=1, with_coordinates=True, labels=HAND_LABELS)
    for inst in data:
        assert sorted(inst.objects) == sorted(HAND_LABELS)
        assert inst.answer == inst.solve()
        assert "at index (2,2)" in inst.question
        assert inst.question.endswith("What will you find?")


def test_sample_walk_size_two_starts_bottom_left() -> None:
    rng = np.random.RandomState(0)
    for _ in range(20):
        path, directions = sample_walk(2, 4, rng)
        assert path[0] == (0, 0)
        assert len(directions) == len(path) - 1 <= 4


def test_load_labels() -> None:
    labels = load_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert labels[:3] == ["tench", "goldfish", "great white shark"]
    assert labels[-1] == "toilet paper"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"size": 1}, "size"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"size": 4, "labels": HAND_LABELS}, "labels"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} "):
        generate_nl_navigation(**kwargs)


def test_bad_lower_level_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        sample_walk(1, 3, np.random.RandomState(0))
    with pytest.raises(ValueError, match="steps"):
        sample_walk(3, 0, np.random.RandomState(0))
    with pytest.raises(ValueError, match="directions"):
        describe_walk("dog", [])
    with pytest.raises(ValueError, match="grid"):
        describe_snake_grid(((0, 1), (2,)), HAND_LABELS)


def test_answer_matches() -> None:
    assert answer_matches("You will find a Goldfish.", "goldfish")
    assert answer_matches("the answer is great white shark", "Great White Shark.")
    assert answer_matches("goldfish", " goldfish. ")
    assert not answer_matches("You will find a shark.", "goldfish")
    assert not answer_matches("", "goldfish")
    with pytest.raises(ValueError, match="answer"):
        answer_matches("anything", " . ")
