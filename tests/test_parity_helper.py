"""The one CPU/GPU parity check (tests/helpers.py) catches what it must: run here CPU against CPU, with
results altered on purpose."""

import numpy as np
import pytest

from tests.helpers import assert_backends_agree, assert_backends_raise, assert_same


def _result(be, V, scale=1.0):
    xp = be.xp
    return {"mean": float(be.scalar(V.mean())) * scale, "n": int(V.size), "label": "x",
            "map": V * xp.float32(scale), "pair": (1, [2.5 * scale, np.nan])}


def test_agreeing_backends_pass_and_results_come_back_on_the_host(cpu):
    V = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a, b = assert_backends_agree(_result, cpu, cpu, V, rtol=1e-6)
    assert isinstance(b["map"], np.ndarray) and b["n"] == 24


@pytest.mark.parametrize("change,message", [
    (lambda r: r["map"].__setitem__((0, 0, 1), 1.01), "result.map"),          # 1 % off one voxel
    (lambda r: r.__setitem__("mean", r["mean"] + 1e-3), "result.mean"),
    (lambda r: r.__setitem__("n", 25), "result.n"),
    (lambda r: r["pair"][1].__setitem__(1, 0.0), "result.pair[1][1]"),       # NaN where NaN was
    (lambda r: r.pop("label"), "keys"),
])
def test_a_difference_beyond_the_tolerance_is_reported_where_it_is(cpu, change, message):
    V = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a, b = _result(cpu, V), _result(cpu, V)
    assert_same(a, b, 1e-6, 0.0)
    change(b)
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        assert_same(a, b, 1e-6, 0.0)


def test_same_error_on_both_backends(cpu):
    def fail(be, V):
        if V.ndim != 3:
            raise ValueError("a map is 3-D")
        return V

    assert_backends_raise(ValueError, fail, cpu, cpu, np.zeros((4, 4)))
    with pytest.raises(pytest.fail.Exception):
        assert_backends_raise(ValueError, fail, cpu, cpu, np.zeros((4, 4, 4)))
