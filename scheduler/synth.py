"""Seeded synthetic topologies: many sites over China, many user regions in Southeast Asia, real-looking cables.

`generate(sites=200, regions=50, seed=0)` returns a `Topology` valid under the schema, for the placement benchmark
and the property tests (which use small sizes). Same arguments, same topology.

What is real and what is drawn:
- Provinces, their tariff levels and time-of-use bands, carbon intensity and PUE ranges follow the reference table
  (../shared/reference/china-sea-network.md §4); provinces the table does not list get plausible neighbouring
  figures (marked "estimate" below). Sites are drawn around province centres, weighted towards the national hubs.
- Backbone PoPs and landing stations sit at their real cities; submarine cables are chains of segments between the
  landings the reference lists for them (§2), lengths from great-circle distance x 1.2.
- Regions are real Southeast Asian metros, most populous first; beyond the list, districts are drawn around the
  largest metros. Each is a network node joined to its nearest landing and to nearby metros.
- Pool sizes, accelerator mixes, per-site throughput variations, tags and SLOs are drawn from the seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scheduler.engine.request import Batch
from scheduler.model.schema import Topology

# (id, name, lat, lon, CNY/kWh flat, time-of-use bands, gCO2/kWh, green share, PUE range, west?, hub?, weight)
_PEAK_GD = [(10, 12, 1.10), (14, 19, 1.10), (0, 8, 0.30)]  # ref §4 Guangdong
_PEAK_EAST = [(8, 11, 1.00), (18, 21, 1.00), (22, 6, 0.30)]  # ref §4 Shanghai / Jiangsu / Anhui
_SOLAR = [(10, 16, 0.26)]  # ref §4 Ningxia / Gansu: solar hours cheapest
PROVINCES = [
    ("guangdong", "Guangdong", 23.6, 113.6, 0.70, _PEAK_GD, 480, 0.30, (1.30, 1.45), False, True, 4.0),
    ("shanghai", "Shanghai", 31.1, 121.3, 0.70, _PEAK_EAST, 580, 0.20, (1.30, 1.50), False, True, 2.0),
    ("jiangsu", "Jiangsu", 32.4, 119.4, 0.68, _PEAK_EAST, 600, 0.20, (1.30, 1.45), False, False, 2.0),
    ("zhejiang", "Zhejiang", 29.6, 120.2, 0.70, _PEAK_EAST, 550, 0.25, (1.30, 1.45), False, False, 1.5),  # estimate
    ("anhui", "Anhui", 31.4, 118.2, 0.68, _PEAK_EAST, 650, 0.15, (1.30, 1.45), False, True, 2.0),
    ("hebei", "Hebei", 40.6, 115.0, 0.45, [], 350, 0.50, (1.25, 1.35), False, True, 3.0),
    ("beijing", "Beijing", 40.0, 116.3, 0.72, _PEAK_EAST, 550, 0.20, (1.30, 1.45), False, False, 1.0),  # estimate
    ("sichuan", "Sichuan", 30.5, 104.0, 0.45, [], 150, 0.85, (1.25, 1.35), False, True, 2.5),
    ("chongqing", "Chongqing", 29.6, 106.5, 0.45, [], 350, 0.50, (1.30, 1.40), False, True, 1.5),
    ("guizhou", "Guizhou", 26.5, 106.6, 0.45, [], 450, 0.45, (1.15, 1.25), True, True, 3.0),
    ("inner-mongolia", "Inner Mongolia", 40.6, 111.7, 0.31, [], 720, 0.25, (1.15, 1.25), True, True, 3.0),
    ("ningxia", "Ningxia", 37.5, 105.6, 0.38, _SOLAR, 450, 0.45, (1.15, 1.25), True, True, 2.5),
    ("gansu", "Gansu", 35.9, 106.0, 0.38, _SOLAR, 400, 0.50, (1.15, 1.25), True, True, 2.0),
    ("hubei", "Hubei", 30.6, 114.2, 0.62, _PEAK_EAST, 450, 0.40, (1.30, 1.45), False, False, 1.0),  # estimate
    ("hunan", "Hunan", 28.2, 112.9, 0.63, _PEAK_EAST, 480, 0.35, (1.30, 1.45), False, False, 0.8),  # estimate
    ("fujian", "Fujian", 25.6, 118.8, 0.60, _PEAK_EAST, 450, 0.40, (1.30, 1.45), False, False, 1.0),  # estimate
    ("hainan", "Hainan", 19.9, 110.2, 0.65, _PEAK_GD, 450, 0.35, (1.35, 1.50), False, False, 0.6),  # estimate
    ("guangxi", "Guangxi", 22.9, 108.3, 0.55, [], 450, 0.45, (1.30, 1.45), False, False, 0.6),  # estimate
    ("yunnan", "Yunnan", 25.0, 102.7, 0.40, [], 150, 0.80, (1.20, 1.30), True, False, 0.8),  # estimate: hydro
    ("shaanxi", "Shaanxi", 34.3, 108.9, 0.50, [], 600, 0.20, (1.20, 1.35), True, False, 0.8),  # estimate
    ("shandong", "Shandong", 36.5, 117.5, 0.62, _PEAK_EAST, 650, 0.15, (1.30, 1.45), False, False, 1.0),  # estimate
    ("henan", "Henan", 34.7, 113.6, 0.58, [], 600, 0.20, (1.25, 1.40), False, False, 0.8),  # estimate
    ("xinjiang", "Xinjiang", 43.8, 87.6, 0.32, [], 650, 0.30, (1.15, 1.25), True, False, 0.6),  # estimate
    ("qinghai", "Qinghai", 36.6, 101.8, 0.35, _SOLAR, 200, 0.85, (1.15, 1.25), True, False, 0.5),  # estimate
]
OFFSHORE_PROVINCES = ("guangdong", "hainan", "fujian")  # coastal provinces that host cross-border pilots

# Mainland and Hong Kong backbone PoPs: (id, name, country, lat, lon)
CN_POPS = [
    ("beijing", "Beijing", "CN", 39.90, 116.41), ("tianjin", "Tianjin", "CN", 39.13, 117.20),
    ("shijiazhuang", "Shijiazhuang", "CN", 38.04, 114.51), ("hohhot", "Hohhot", "CN", 40.84, 111.75),
    ("taiyuan", "Taiyuan", "CN", 37.87, 112.55), ("jinan", "Jinan", "CN", 36.65, 117.12),
    ("qingdao", "Qingdao", "CN", 36.07, 120.38), ("zhengzhou", "Zhengzhou", "CN", 34.75, 113.62),
    ("xian", "Xi'an", "CN", 34.34, 108.94), ("lanzhou", "Lanzhou", "CN", 36.06, 103.83),
    ("yinchuan", "Yinchuan", "CN", 38.49, 106.23), ("xining", "Xining", "CN", 36.62, 101.78),
    ("urumqi", "Urumqi", "CN", 43.83, 87.62), ("chengdu", "Chengdu", "CN", 30.66, 104.07),
    ("chongqing-pop", "Chongqing", "CN", 29.56, 106.55), ("guiyang", "Guiyang", "CN", 26.65, 106.63),
    ("kunming", "Kunming", "CN", 25.04, 102.71), ("nanning", "Nanning", "CN", 22.82, 108.37),
    ("guangzhou", "Guangzhou", "CN", 23.13, 113.26), ("shenzhen", "Shenzhen", "CN", 22.54, 114.06),
    ("haikou", "Haikou", "CN", 20.04, 110.34), ("changsha", "Changsha", "CN", 28.23, 112.94),
    ("wuhan", "Wuhan", "CN", 30.59, 114.31), ("nanchang", "Nanchang", "CN", 28.68, 115.86),
    ("hefei", "Hefei", "CN", 31.82, 117.23), ("nanjing", "Nanjing", "CN", 32.06, 118.80),
    ("shanghai-pop", "Shanghai", "CN", 31.23, 121.47), ("hangzhou", "Hangzhou", "CN", 30.27, 120.16),
    ("fuzhou", "Fuzhou", "CN", 26.07, 119.30), ("xiamen", "Xiamen", "CN", 24.48, 118.09),
    ("hongkong", "Hong Kong", "HK", 22.28, 114.16),
]
# Cable landing stations (ref §2): (id, name, country, lat, lon)
LANDINGS = [
    ("shantou-cls", "Shantou", "CN", 23.33, 116.73), ("chongming", "Chongming", "CN", 31.52, 121.90),
    ("nanhui", "Nanhui / Lingang", "CN", 30.88, 121.93), ("hainan-cls", "Hainan", "CN", 19.62, 110.80),
    ("chung-hom-kok", "Chung Hom Kok", "HK", 22.22, 114.20), ("tseung-kwan-o", "Tseung Kwan O", "HK", 22.29, 114.27),
    ("cape-daguilar", "Cape D'Aguilar", "HK", 22.21, 114.26), ("south-lantau", "South Lantau", "HK", 22.23, 113.93),
    ("tuas", "Tuas", "SG", 1.32, 103.64), ("changi", "Changi", "SG", 1.38, 103.98), ("katong", "Katong", "SG", 1.30, 103.90),
    ("batangas", "Batangas", "PH", 13.75, 121.05), ("nasugbu", "Nasugbu", "PH", 14.07, 120.63),
    ("quy-nhon", "Quy Nhon", "VN", 13.77, 109.22), ("vung-tau", "Vung Tau", "VN", 10.35, 107.08),
    ("da-nang-cls", "Da Nang", "VN", 16.05, 108.20), ("sri-racha", "Sri Racha", "TH", 13.17, 100.93),
    ("songkhla", "Songkhla", "TH", 7.19, 100.60), ("satun", "Satun", "TH", 6.62, 100.07),
    ("kuantan", "Kuantan", "MY", 3.81, 103.33), ("mersing", "Mersing", "MY", 2.43, 103.84),
    ("penang-cls", "Penang", "MY", 5.35, 100.30), ("sihanoukville", "Sihanoukville", "KH", 10.63, 103.50),
    ("jakarta-cls", "Jakarta area", "ID", -6.12, 106.83), ("tungku", "Tungku", "BN", 4.97, 115.00),
]
_MAINLAND_LANDINGS = {"shantou-cls", "chongming", "nanhui", "hainan-cls"}
_HK_LANDINGS = {"chung-hom-kok", "tseung-kwan-o", "cape-daguilar", "south-lantau"}
# Submarine cables (ref §2): (id, name, usable Gbps, CNY/GB, status, landings in order along the route)
CABLES = [
    ("adc", "Asia Direct Cable", 400, 0.05, "up", ["shantou-cls", "chung-hom-kok", "batangas", "quy-nhon", "sri-racha", "tuas"]),
    ("sjc", "Southeast Asia-Japan Cable", 100, 0.08, "up", ["shantou-cls", "chung-hom-kok", "nasugbu", "tungku", "tuas"]),
    ("sjc2", "SJC2", 400, 0.05, "up", ["nanhui", "quy-nhon", "sihanoukville", "songkhla", "changi"]),
    ("apg", "Asia Pacific Gateway", 200, 0.06, "up", ["chongming", "nanhui", "tseung-kwan-o", "quy-nhon", "songkhla", "kuantan", "changi"]),
    ("smw3", "SEA-ME-WE 3", 10, 0.15, "up", ["chongming", "shantou-cls", "batangas", "da-nang-cls", "tungku", "jakarta-cls", "tuas", "penang-cls", "satun"]),
    ("apcn-2", "APCN-2", 20, 0.12, "up", ["chongming", "shantou-cls", "chung-hom-kok", "batangas", "kuantan", "katong"]),
    ("aae-1", "Asia-Africa-Europe 1", 100, 0.07, "up", ["cape-daguilar", "vung-tau", "sihanoukville", "songkhla", "mersing", "changi"]),
    ("aag", "Asia-America Gateway", 20, 0.12, "up", ["south-lantau", "vung-tau", "mersing", "changi"]),
    ("sea-h2x", "SEA-H2X", 400, 0.05, "planned", ["hainan-cls", "tseung-kwan-o", "batangas", "songkhla", "kuantan", "changi"]),
    ("indigo-west", "INDIGO West", 100, 0.05, "up", ["changi", "jakarta-cls"]),
]
# Overland cross-border fiber (estimate): China-Vietnam, China-Laos, China-Myanmar. (China PoP, SEA metro)
OVERLAND = [("nanning", "hanoi"), ("kunming", "vientiane"), ("kunming", "yangon")]
# Southeast Asian metros, most populous first: (id, name, country, lat, lon, UTC offset)
METROS = [
    ("jakarta", "Jakarta", "ID", -6.21, 106.85, 7), ("manila", "Manila", "PH", 14.60, 120.98, 8),
    ("bangkok", "Bangkok", "TH", 13.76, 100.50, 7), ("ho-chi-minh-city", "Ho Chi Minh City", "VN", 10.78, 106.70, 7),
    ("singapore", "Singapore", "SG", 1.29, 103.85, 8), ("kuala-lumpur", "Kuala Lumpur", "MY", 3.14, 101.69, 8),
    ("hanoi", "Hanoi", "VN", 21.03, 105.85, 7), ("yangon", "Yangon", "MM", 16.87, 96.20, 6.5),
    ("surabaya", "Surabaya", "ID", -7.25, 112.75, 7), ("bandung", "Bandung", "ID", -6.91, 107.61, 7),
    ("cebu", "Cebu", "PH", 10.32, 123.89, 8), ("phnom-penh", "Phnom Penh", "KH", 11.56, 104.92, 7),
    ("medan", "Medan", "ID", 3.60, 98.67, 7), ("davao", "Davao", "PH", 7.19, 125.46, 8),
    ("da-nang", "Da Nang", "VN", 16.05, 108.21, 7), ("johor-bahru", "Johor Bahru", "MY", 1.49, 103.74, 8),
    ("penang", "George Town", "MY", 5.41, 100.33, 8), ("chiang-mai", "Chiang Mai", "TH", 18.79, 98.98, 7),
    ("semarang", "Semarang", "ID", -6.97, 110.42, 7), ("hai-phong", "Hai Phong", "VN", 20.84, 106.69, 7),
    ("vientiane", "Vientiane", "LA", 17.97, 102.63, 7), ("mandalay", "Mandalay", "MM", 21.96, 96.09, 6.5),
    ("makassar", "Makassar", "ID", -5.15, 119.43, 8), ("palembang", "Palembang", "ID", -2.98, 104.76, 7),
    ("can-tho", "Can Tho", "VN", 10.05, 105.75, 7), ("khon-kaen", "Khon Kaen", "TH", 16.43, 102.84, 7),
    ("hat-yai", "Hat Yai", "TH", 7.01, 100.47, 7), ("ipoh", "Ipoh", "MY", 4.60, 101.08, 8),
    ("kuching", "Kuching", "MY", 1.55, 110.34, 8), ("kota-kinabalu", "Kota Kinabalu", "MY", 5.98, 116.07, 8),
    ("denpasar", "Denpasar", "ID", -8.65, 115.22, 8), ("bandar-seri-begawan", "Bandar Seri Begawan", "BN", 4.90, 114.94, 8),
    ("phuket", "Phuket", "TH", 7.88, 98.39, 7), ("siem-reap", "Siem Reap", "KH", 13.36, 103.86, 7),
    ("iloilo", "Iloilo", "PH", 10.72, 122.56, 8), ("batam", "Batam", "ID", 1.05, 104.03, 7),
    ("hue", "Hue", "VN", 16.46, 107.59, 7), ("dili", "Dili", "TL", -8.56, 125.56, 9),
    ("pekanbaru", "Pekanbaru", "ID", 0.51, 101.45, 7), ("nakhon-ratchasima", "Nakhon Ratchasima", "TH", 14.97, 102.10, 7),
]
# Accelerators and models: the default topology's figures (ref §5), so costs are comparable across topologies.
ACCELERATORS = [
    {"id": "ascend-910b", "name": "Huawei Ascend 910B", "watts": 350, "cny_per_hour": 4.7},
    {"id": "ascend-910c", "name": "Huawei Ascend 910C", "watts": 700, "cny_per_hour": 7.8},
    {"id": "h20", "name": "NVIDIA H20", "watts": 400, "cny_per_hour": 4.4},
]
MODELS = [
    {"id": "llm-70b", "name": "70B-class dense LLM", "stream_tokens_per_s": 30, "prefill_parallelism": 8,
     "throughput": {"ascend-910b": (3000, 300), "ascend-910c": (6000, 600), "h20": (2400, 400)}},
    {"id": "llm-8b", "name": "8B-class dense LLM", "stream_tokens_per_s": 80, "prefill_parallelism": 1,
     "throughput": {"ascend-910b": (24000, 2400), "ascend-910c": (48000, 4800), "h20": (19200, 3200)}},
]
_ACCEL_MIX = (["ascend-910b", "ascend-910c", "h20"], [0.55, 0.15, 0.30])
_SERVERS = ([4, 8, 16, 32, 64], [0.15, 0.30, 0.30, 0.18, 0.07])  # 8-accelerator servers per pool
_SLOS = [({"ttft_ms": 1000}, 0.45), ({"ttft_ms": 1500}, 0.25), ({"ttft_ms": 2000, "e2e_ms": 60000}, 0.20),
         ({"ttft_ms": 800}, 0.10)]
ROUTE_FACTOR_LAND = 1.4
ROUTE_FACTOR_SEA = 1.2


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))


def _km(a: tuple, b: tuple, factor: float) -> float:
    return round(max(1.0, great_circle_km(a[0], a[1], b[0], b[1]) * factor), 1)


def generate(sites: int = 200, regions: int = 50, seed: int = 0, *, cables: int | None = None,
             offshore_sites: int | None = None, name: str | None = None) -> Topology:
    """A random but realistic topology: `sites` data centers, `regions` user metros, the first `cables` cables.

    `offshore_sites` (default ~3% of sites, at least one) are tagged `offshore-pilot`, in coastal provinces.
    """
    if sites < 1 or regions < 1:
        raise ValueError("need at least one site and one region")
    rng = np.random.default_rng(seed)
    where: dict[str, tuple[float, float]] = {}

    # --- Tariffs and sites ---------------------------------------------------------------------------------
    tariffs = []
    for pid, pname, _, _, price, bands, carbon, green, *_ in PROVINCES:
        tariffs.append({"id": pid, "name": f"{pname} large industry", "cny_per_kwh": price,
                        "bands": [{"start": s, "end": e, "cny_per_kwh": p} for s, e, p in bands],
                        "carbon_g_per_kwh": carbon, "green_share": green})
    weights = np.array([p[-1] for p in PROVINCES])
    prov_idx = rng.choice(len(PROVINCES), size=sites, p=weights / weights.sum())
    n_offshore = max(1, round(0.03 * sites)) if offshore_sites is None else offshore_sites
    coastal = [i for i in range(sites) if PROVINCES[prov_idx[i]][0] in OFFSHORE_PROVINCES]
    while len(coastal) < n_offshore:  # make room for the pilots on the coast
        i = next(i for i in range(sites) if i not in coastal)
        prov_idx[i] = 0  # guangdong
        coastal.append(i)
    offshore = set(rng.choice(sorted(coastal), size=n_offshore, replace=False).tolist()) if n_offshore else set()

    site_list = []
    per_province: dict[str, int] = {}
    for i in range(sites):
        pid, pname, lat, lon, _, _, carbon, green, pue, west, hub, _ = PROVINCES[prov_idx[i]]
        per_province[pid] = per_province.get(pid, 0) + 1
        sid = f"{pid}-{per_province[pid]:02d}"
        slat = float(np.clip(lat + rng.normal(0, 0.8), 18.5, 48.0))
        slon = float(np.clip(lon + rng.normal(0, 0.9), 80.0, 125.0))
        where[sid] = (slat, slon)
        tags = ["west" if west else "east"] + (["hub"] if hub else [])
        if green >= 0.45:
            tags.append("green")
        if i in offshore:
            tags.append("offshore-pilot")
        pools = []
        for _ in range(int(rng.choice([1, 2, 3], p=[0.45, 0.40, 0.15]))):
            acc = str(rng.choice(_ACCEL_MIX[0], p=_ACCEL_MIX[1]))
            pool: dict[str, Any] = {"accelerator": acc, "count": 8 * int(rng.choice(_SERVERS[0], p=_SERVERS[1]))}
            if rng.random() < 0.2:  # some pools are dedicated to one model
                pool["models"] = [str(rng.choice([m["id"] for m in MODELS]))]
            if rng.random() < 0.3:  # site-specific tuning: +-15% throughput
                factor = float(rng.uniform(0.85, 1.15))
                pool["throughput"] = {
                    m["id"]: {"prefill_tokens_per_s": round(m["throughput"][acc][0] * factor, 1),
                              "decode_tokens_per_s": round(m["throughput"][acc][1] * factor, 1)}
                    for m in MODELS
                }
            pools.append(pool)
        site: dict[str, Any] = {
            "id": sid, "name": f"{pname} site {per_province[pid]}", "province": pname, "lat": round(slat, 3),
            "lon": round(slon, 3), "pue": round(float(rng.uniform(*pue)), 3), "tariff": pid, "tags": tags,
            "pools": pools,
        }
        if "green" in tags and rng.random() < 0.3:  # contracted green power
            site["carbon_g_per_kwh"] = round(carbon * float(rng.uniform(0.3, 0.7)), 1)
        site_list.append(site)

    # --- Nodes --------------------------------------------------------------------------------------------
    nodes = []
    for nid, nname, country, lat, lon in CN_POPS:
        nodes.append({"id": nid, "kind": "pop", "name": nname, "country": country, "lat": lat, "lon": lon})
        where[nid] = (lat, lon)
    used_cables = CABLES if cables is None else CABLES[:cables]
    landed = {x for c in used_cables for x in c[5]}
    for nid, nname, country, lat, lon in LANDINGS:
        if nid in landed:
            nodes.append({"id": nid, "kind": "landing", "name": nname, "country": country, "lat": lat, "lon": lon})
            where[nid] = (lat, lon)

    # --- Regions ------------------------------------------------------------------------------------------
    region_list = []
    slo_choices, slo_p = zip(*_SLOS)
    for k in range(regions):
        if k < len(METROS):
            rid, rname, country, lat, lon, utc = METROS[k]
        else:  # a district of one of the largest metros
            base = METROS[int(rng.integers(0, 8))]
            rid, rname = f"{base[0]}-{k}", f"{base[1]} district {k}"
            country, utc = base[2], base[5]
            lat, lon = base[3] + float(rng.normal(0, 0.15)), base[4] + float(rng.normal(0, 0.15))
        where[rid] = (lat, lon)
        region_list.append({"id": rid, "name": rname, "country": country, "lat": round(lat, 3), "lon": round(lon, 3),
                            "utc_offset_hours": utc, "slo": dict(slo_choices[int(rng.choice(len(slo_choices), p=slo_p))])})

    # --- Links --------------------------------------------------------------------------------------------
    links: list[dict] = []
    joined: set[frozenset] = set()

    def link(a: str, b: str, factor: float, transit: float, gateway_ms: float = 0.0) -> None:
        if a == b or frozenset((a, b)) in joined:
            return
        joined.add(frozenset((a, b)))
        km = _km(where[a], where[b], factor)
        row: dict[str, Any] = {"a": a, "b": b, "length_km": km, "transit_cny_per_gb": transit}
        if gateway_ms:
            row["latency_ms"] = round(km * 0.005 + gateway_ms, 3)
        links.append(row)

    def nearest(point: tuple, candidates: list[str], n: int = 1) -> list[str]:
        return sorted(candidates, key=lambda c: great_circle_km(*point, *where[c]))[:n]

    cn_pops = [p[0] for p in CN_POPS if p[2] == "CN"]
    # Backbone: each mainland PoP to its three nearest, then join any pieces left apart.
    for p in cn_pops:
        for q in nearest(where[p], [x for x in cn_pops if x != p], 3):
            link(p, q, ROUTE_FACTOR_LAND, 0.02)
    _join_components(cn_pops, links, where, link)
    link("hongkong", "shenzhen", 1.5, 0.5, gateway_ms=4.0)  # cross-border exit (as in the default topology)
    link("hongkong", "guangzhou", 1.5, 0.5, gateway_ms=4.0)
    for i, s in enumerate(site_list):  # sites: nearest PoP, half of them dual-homed
        for q in nearest(where[s["id"]], cn_pops, 2 if rng.random() < 0.5 else 1):
            link(s["id"], q, ROUTE_FACTOR_LAND, 0.02)
        if "offshore-pilot" in s["tags"] and "shantou-cls" in where:  # pilots sit next to a landing
            link(s["id"], "shantou-cls", ROUTE_FACTOR_LAND, 0.5, gateway_ms=4.0)
    for nid, _, country, _, _ in LANDINGS:
        if nid not in where:
            continue
        if nid in _MAINLAND_LANDINGS:
            link(nid, nearest(where[nid], cn_pops)[0], 1.5, 0.5, gateway_ms=4.0)
        elif nid in _HK_LANDINGS:
            link(nid, "hongkong", 1.5, 0.03, gateway_ms=2.0)
    # Southeast Asia: each landing to its nearest metro in the same country (any metro if none).
    metro_ids = [r["id"] for r in region_list]
    sea_landings = [x for x in landed if x not in _MAINLAND_LANDINGS | _HK_LANDINGS]
    country_of = {r["id"]: r["country"] for r in region_list}
    for nid, _, country, _, _ in LANDINGS:
        if nid in sea_landings:
            same = [m for m in metro_ids if country_of[m] == country]
            link(nid, nearest(where[nid], same or metro_ids)[0], ROUTE_FACTOR_LAND, 0.03)
    # Metros: to their two nearest metros (terrestrial backbone or short regional submarine hops), and each
    # metro to its nearest landing so that every metro has a way out.
    for m in metro_ids:
        for q in nearest(where[m], [x for x in metro_ids if x != m], 2):
            link(m, q, ROUTE_FACTOR_LAND, 0.03)
        if sea_landings:
            link(m, nearest(where[m], sea_landings)[0], ROUTE_FACTOR_LAND, 0.03)
    _join_components(metro_ids, links, where, link)
    for cn, metro in OVERLAND:  # overland cross-border fiber where that metro exists
        if metro in where:
            link(cn, metro, 1.6, 0.5, gateway_ms=4.0)
    if not sea_landings and not any(metro in where for _, metro in OVERLAND):
        link(metro_ids[0], "nanning", 1.6, 0.5, gateway_ms=4.0)  # no cable and no overland metro: one line out

    cable_list = []
    for cid, cname, gbps, transit, status, chain in used_cables:
        cable_list.append({
            "id": cid, "name": cname, "capacity_gbps": gbps, "transit_cny_per_gb": transit, "status": status,
            "segments": [{"a": a, "b": b, "length_km": _km(where[a], where[b], ROUTE_FACTOR_SEA)}
                         for a, b in zip(chain, chain[1:])],
        })

    doc = {
        "name": name or f"synth-{sites}x{regions}-seed{seed}",
        "description": f"Synthetic topology: {sites} sites, {regions} regions, seed {seed} (scheduler.synth)",
        "settings": {"bytes_per_token": 50, "fiber_ms_per_km": 0.005, "max_utilization": 0.9},
        "accelerators": ACCELERATORS,
        "models": [{**{k: v for k, v in m.items() if k != "throughput"},
                    "throughput": {a: {"prefill_tokens_per_s": p, "decode_tokens_per_s": d}
                                   for a, (p, d) in m["throughput"].items()}} for m in MODELS],
        "tariffs": tariffs,
        "data_classes": [
            {"id": "public", "name": "Public / non-sensitive prompts, any site"},
            {"id": "offshore-processing", "name": "Cross-border offshore data processing",
             "allowed_tags": ["offshore-pilot"]},
            {"id": "hub-only", "name": "Regulated workloads kept on national hub sites", "allowed_tags": ["hub"]},
        ],
        "sites": site_list,
        "nodes": nodes,
        "regions": region_list,
        "links": links,
        "cables": cable_list,
    }
    return Topology.model_validate(doc)


def _join_components(ids: list[str], links: list[dict], where: dict, link) -> None:
    """Add the shortest link between pieces of `ids` until they form one connected piece."""
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for row in links:
        if row["a"] in parent and row["b"] in parent:
            parent[find(row["a"])] = find(row["b"])
    while len({find(i) for i in ids}) > 1:
        root = find(ids[0])
        inside = [i for i in ids if find(i) == root]
        outside = [i for i in ids if find(i) != root]
        a, b = min(((a, b) for a in inside for b in outside),
                   key=lambda ab: great_circle_km(*where[ab[0]], *where[ab[1]]))
        link(a, b, ROUTE_FACTOR_LAND, 0.03)
        parent[find(b)] = root


def random_batches(topology: Topology, n: int, seed: int = 0) -> list[Batch]:
    """`n` seeded request batches from the topology's regions: realistic prompt and answer sizes and SLOs.

    Prompt tokens are log-normal around 1,200 (16..16,000), answers around 250 (1..4,000), requests per batch
    around 8 (1..256); regions are weighted by rank (the list order), models 60/40 large/small, 3% of batches in
    each restricted data class and the rest public. A quarter carry their own SLO instead of the region default (a time to first token from 500 ms
    to 3 s, some with an end-to-end bound); long-context batches (over 4,000 prompt tokens) are document work whose
    TTFT budget grows with the prompt (0.25 ms per token on top of the region's or their own figure), as services
    commonly scale it.
    """
    rng = np.random.default_rng(seed)
    regions = [r.id for r in topology.regions]
    rw = 1.0 / np.arange(1, len(regions) + 1) ** 0.7
    models = [m.id for m in topology.models]
    mw = np.array([0.6] + [0.4 / max(1, len(models) - 1)] * (len(models) - 1))[: len(models)]
    classes = [d.id for d in topology.data_classes]
    cw = np.array([1.0 if c == "public" else RESTRICTED_SHARE for c in classes])
    if "public" in classes:
        cw[classes.index("public")] = max(0.0, 1.0 - RESTRICTED_SHARE * (len(classes) - 1))
    region = rng.choice(len(regions), size=n, p=rw / rw.sum())
    model = rng.choice(len(models), size=n, p=mw / mw.sum())
    dclass = rng.choice(len(classes), size=n, p=cw / cw.sum())
    inp = np.clip(np.round(rng.lognormal(math.log(1200), 1.0, n)), 16, 16000).astype(int)
    out = np.clip(np.round(rng.lognormal(math.log(250), 0.8, n)), 1, 4000).astype(int)
    req = np.clip(np.round(rng.lognormal(math.log(8), 1.0, n)), 1, 256).astype(int)
    own = rng.random(n) < 0.25
    ttft = rng.choice([500.0, 800.0, 1500.0, 3000.0], size=n)
    e2e = np.where(rng.random(n) < 0.3, rng.choice([30000.0, 60000.0, 120000.0], size=n), np.nan)
    default = {r.id: r.slo.ttft_ms for r in topology.regions}
    out_batches = []
    for i in range(n):
        rid = regions[region[i]]
        t_own = float(ttft[i]) if own[i] else None
        if inp[i] > LONG_CONTEXT:
            base = t_own if t_own is not None else (default[rid] or 1000.0)
            t_own = base + LONG_CONTEXT_MS_PER_TOKEN * float(inp[i])
        out_batches.append(Batch(rid, models[model[i]], int(inp[i]), int(out[i]), int(req[i]), t_own,
                                 float(e2e[i]) if own[i] and not np.isnan(e2e[i]) else None, classes[dclass[i]],
                                 id=f"b{i}"))
    return out_batches


RESTRICTED_SHARE = 0.03  # of batches, per data class other than public
LONG_CONTEXT = 4000  # prompt tokens beyond which a batch counts as document work
LONG_CONTEXT_MS_PER_TOKEN = 0.25
