"""A CI-sized batch of the mutation fuzzer (benchmarks/fuzz.py runs the same one for as long as you like):
every mutated mp4/mkv/mov/wav ends in a valid output or a clean one-line error, with nothing partial left."""

from __future__ import annotations

import numpy as np

from ccstereo.testing.fuzz import generate, make_seeds, mutate, run_cases

CI_CASES, CI_SEED = 400, 20261123


def test_mutations_are_reproducible_from_the_seed():
    data = bytes(range(256)) * 64
    a = [mutate(data, np.random.default_rng(5)) for _ in range(3)]
    b = [mutate(data, np.random.default_rng(5)) for _ in range(3)]
    assert a == b and all(m[0] != data for m in a)


def test_fuzz_batch_finds_no_defect(tmp_path):
    seeds = make_seeds(tmp_path / "seeds")
    cases = generate(seeds, CI_CASES, CI_SEED, tmp_path / "cases")
    report = run_cases(cases, tmp_path / "work", jobs=2)
    counts = report.table()
    print(f"fuzz outcomes over {CI_CASES} cases (seed {CI_SEED}): {dict(counts)}; slowest {report.slowest()}")
    assert len(report.results) == CI_CASES
    assert not report.defects(), [(r.name, r.outcome, r.mutation, r.detail[:300]) for r in report.defects()]
    assert set(counts) <= {"ok", "clean-error"} and counts["ok"] > 0 and counts["clean-error"] > 0
    assert report.slowest().seconds < 30
