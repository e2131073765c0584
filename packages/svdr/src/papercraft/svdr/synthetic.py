"""A generated retrieval task where word overlap is not enough: made-up countries and their facts.

Each made-up country (``Velmora``, ``Quintaro``, …) gets one passage per attribute — its capital,
population, founder, longest river, language and main export — padded with filler sentences of
varied length. Questions name the country but ask for the attribute in *other words* than the
passage uses ("which city is the seat of government of Velmora?" for "The capital of Velmora is
…"). Every passage of a country shares its name, so word matching (BM25) can find the country but
not the fact; a trained encoder learns the paraphrases from the training countries and carries them
to countries it has never seen. Hard negatives are the same country's other passages.

Used by the training test, the demo and the CLI's ``--synthetic`` switch; everything comes from a
seeded :class:`random.Random`, so a seed always gives the same task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from papercraft.svdr.data import BeirData, DprExample, Passage

__all__ = ["ATTRIBUTES", "SyntheticTask", "make_country_task"]

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "kl"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "io"]
_CODAS = ["", "n", "r", "s", "l", "th", "m"]

# attribute -> (passage template, question paraphrases); the paraphrases avoid the passage's words.
ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "capital": (
        "The capital of {country} is {city}.",
        (
            "which city is the seat of government of {country}",
            "where do the rulers of {country} sit",
            "{country} administrative centre",
        ),
    ),
    "population": (
        "{country} has a population of {number} people.",
        (
            "how many inhabitants live in {country}",
            "how many residents does {country} count",
            "{country} headcount of citizens",
        ),
    ),
    "founder": (
        "{country} was founded by {person} in the year {year}.",
        (
            "who established {country}",
            "who started the nation of {country}",
            "{country} originator and creation date",
        ),
    ),
    "river": (
        "The longest river in {country} is the {river}.",
        (
            "what waterway flows furthest through {country}",
            "name the biggest stream crossing {country}",
            "{country} main watercourse",
        ),
    ),
    "language": (
        "Most people in {country} speak {language}.",
        (
            "what tongue do citizens of {country} talk in",
            "which dialect is used for conversation in {country}",
            "{country} spoken idiom",
        ),
    ),
    "export": (
        "The main export of {country} is {product}.",
        (
            "what goods does {country} sell abroad most",
            "which merchandise leaves {country} for foreign markets",
            "{country} top traded commodity overseas",
        ),
    ),
}

_PRODUCTS = ["copper", "wool", "coffee", "timber", "salt", "tin", "olives", "silk", "rice", "glass"]
_FILLER = [
    "Travellers often remark on the weather, which changes quickly in spring.",
    "Local markets open early and close before noon on most days.",
    "Old stone bridges and narrow streets draw many visitors every summer.",
    "The region saw several disputes over its borders during past centuries.",
    "Schools teach music and mathematics from a young age.",
    "Festivals with lanterns and drums are held at the end of the harvest.",
    "Railway lines connect the larger towns with the coast.",
    "Historians still debate how the first settlements were organised.",
    "Fishing villages line the northern shore.",
    "A national library keeps records that go back many generations.",
]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    ]
    return "".join(parts).capitalize()


@dataclass(frozen=True)
class SyntheticTask:
    """A generated task: DPR-style training examples and a BEIR-style test split.

    Args:
        train (list[DprExample]): one example per (training country, attribute, paraphrase), with the
            same country's other passages as hard negatives.
        test (BeirData): the corpus (every passage, titled with its country), the questions about the
            held-out countries (one per country and attribute) and their qrels (one relevant passage).
    """

    train: list[DprExample]
    test: BeirData


def make_country_task(
    num_train: int = 48, num_test: int = 16, *, filler: tuple[int, int] = (0, 4), seed: int = 0
) -> SyntheticTask:
    """Generate the made-up-countries task.

    Args:
        num_train (int): countries whose questions are used for training. Default: 48
        num_test (int): held-out countries whose questions form the test queries. Default: 16
        filler (tuple[int, int]): the range (inclusive) of filler sentences per passage, so passage
            lengths vary. Default: (0, 4)
        seed (int): the random seed. Default: 0

    Returns:
        SyntheticTask: the training examples and the test split.

    Raises:
        ValueError: on a non-positive count or a bad ``filler`` range.
    """
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    low, high = filler
    if not (0 <= low <= high <= len(_FILLER)):
        raise ValueError(f"filler must be (low, high) with 0 <= low <= high <= {len(_FILLER)}")
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < num_train + num_test:
        names.add(_word(rng, rng.choice((2, 3))))
    countries = sorted(names)
    rng.shuffle(countries)
    corpus: dict[str, dict[str, str]] = {}
    passages: dict[str, dict[str, Passage]] = {}
    for c, country in enumerate(countries):
        values = {
            "country": country,
            "city": _word(rng, 2),
            "number": f"{rng.randint(2, 90)},{rng.randint(100, 999)},{rng.randint(100, 999)}",
            "person": f"{_word(rng, 2)} {_word(rng, 3)}",
            "year": str(rng.randint(800, 1950)),
            "river": _word(rng, 2),
            "language": _word(rng, 2) + "ish",
            "product": rng.choice(_PRODUCTS),
        }
        passages[country] = {}
        for attribute, (template, _) in ATTRIBUTES.items():
            sentences = [template.format(**values)]
            sentences += rng.sample(_FILLER, rng.randint(low, high))
            rng.shuffle(sentences)
            doc_id = f"c{c}-{attribute}"
            text = " ".join(sentences)
            corpus[doc_id] = {"title": country, "text": text}
            passages[country][attribute] = Passage(text, country, doc_id)
    train: list[DprExample] = []
    for country in countries[:num_train]:
        for attribute, (_, questions) in ATTRIBUTES.items():
            negatives = tuple(p for a, p in passages[country].items() if a != attribute)
            for question in questions:
                train.append(
                    DprExample(
                        question=question.format(country=country),
                        positives=(passages[country][attribute],),
                        hard_negatives=negatives,
                    )
                )
    rng.shuffle(train)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for country in countries[num_train:]:
        for attribute, (_, questions) in ATTRIBUTES.items():
            query_id = f"q{len(queries)}"
            queries[query_id] = rng.choice(questions).format(country=country)
            qrels[query_id] = {str(passages[country][attribute].passage_id): 1}
    return SyntheticTask(train, BeirData(corpus, queries, qrels))
