"""The fuzz corpus through ``gpuvalid run``: a fast subset in the default suite, the whole set with -m slow.

Each case runs in its own process (peak memory from ``resource``); see ``runner.py`` for the checks.
"""

import pytest

from .runner import run_corpus, summarise


def _assert_clean(res):
    bad = [o for o in res["outcomes"] if o["problems"]]
    assert not bad, summarise(res)


def test_fuzz_fast_subset(tmp_path):
    res = run_corpus(tmp_path, "fast", workers=2)
    assert res["cases"] >= 25
    _assert_clean(res)


@pytest.mark.slow
def test_fuzz_full_corpus(tmp_path):
    res = run_corpus(tmp_path, "all", workers=2)
    assert res["cases"] >= 150
    _assert_clean(res)
