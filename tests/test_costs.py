"""Cost and latency arithmetic, checked against hand calculations."""

from __future__ import annotations

import pytest

from scheduler import costs
from scheduler.model.schema import PriceBand, Tariff


def tariff(*bands: tuple[int, int, float]) -> Tariff:
    return Tariff(id="t", cny_per_kwh=0.7, carbon_g_per_kwh=500,
                  bands=[PriceBand(start=a, end=b, cny_per_kwh=p) for a, b, p in bands])


def test_time_of_use_bands_and_midnight_wrap():
    prices = costs.hourly_prices(tariff((10, 12, 1.1), (22, 2, 0.3)))
    assert prices[9] == 0.7 and prices[10] == 1.1 and prices[11] == 1.1 and prices[12] == 0.7
    assert [prices[h] for h in (21, 22, 23, 0, 1, 2)] == [0.7, 0.3, 0.3, 0.3, 0.3, 0.7]


def test_energy_cost_and_carbon_per_million_tokens():
    joules = costs.device_joules_per_token(watts=400, decode_tokens_per_s=400)  # 1 J per token at the device
    kwh = costs.kwh_per_mtok(joules, pue=1.2)
    assert kwh == pytest.approx(1.2e6 / 3.6e6)
    assert costs.g_co2_per_mtok(kwh, 600) == pytest.approx(kwh * 600)
    # 4 CNY per device-hour at 400 tok/s is 4 / 1.44M tokens.
    assert costs.cny_per_mtok(kwh, 0.5, 4.0, 400) == pytest.approx(kwh * 0.5 + 4 / 3600 / 400 * 1e6)
    assert costs.cny_per_mtok(kwh, 0.5, 4.0, 400, transit_cny_per_gb=1.0, bytes_per_token=100) == pytest.approx(
        kwh * 0.5 + 4 / 3600 / 400 * 1e6 + 0.1)
    assert costs.device_joules_per_token(400, 400, measured=0.5) == 0.5


def test_cost_rises_with_price_and_falls_with_throughput():
    assert costs.cny_per_mtok(0.3, 1.0, 4, 400) > costs.cny_per_mtok(0.3, 0.3, 4, 400)
    assert costs.cny_per_mtok(0.3, 1.0, 4, 800) < costs.cny_per_mtok(0.3, 1.0, 4, 400)


def test_latency_pieces():
    assert costs.prefill_ms(2000, 4000, 8) == pytest.approx(62.5)
    assert costs.decode_ms(500, 40) == pytest.approx(12500)


def test_weight_counts_input_at_the_prefill_discount():
    assert costs.token_weight(2000, 500, speedup=10) == pytest.approx(700)
