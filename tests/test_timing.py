import pytest

from fercomp.timing import measure, summarize


def test_percentiles_on_known_samples():
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    s = summarize(samples, batch_size=4)
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p95_ms"] == pytest.approx(95.05)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["images_per_s"] == pytest.approx(4 * 1000 / 50.5)


def test_measure_uses_the_clock_and_skips_warmup():
    ticks = iter(range(1000))
    calls = []
    # fake clock: every call advances one second, so each timed call lasts exactly 1 s
    result = measure(lambda: calls.append(1), warmup=3, iters=5, clock=lambda: next(ticks))
    assert len(calls) == 8
    assert result["iters"] == 5 and result["p50_ms"] == pytest.approx(1000.0)
