"""What the generated market is made of: GPU models, drivers, places, CPUs, disks.

Figures are plausible for late 2025 (per-GPU prices in $/h, VRAM in MB as Vast reports it,
DL-perf and FP32 TFLOPS per GPU); they only need to look and sort like the real market.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    name: str
    vram_mb: int  # per GPU, as Vast reports gpu_ram
    compute_cap: int  # x100
    dlperf: float  # per GPU
    tflops: float  # FP32 per GPU
    mem_bw: float  # GB/s
    max_power: float  # W
    price: tuple[float, float]  # $/h per GPU, low..high
    min_driver: int  # index into DRIVERS: the oldest driver that supports the card
    datacenter: bool = False  # SXM/PCIe server parts: datacenter hosts, NVLink when SXM
    weight: int = 1  # how common the model is in the generated market


GPU_MODELS: tuple[GpuModel, ...] = (
    GpuModel("RTX 3060", 12288, 860, 12.4, 12.7, 360.0, 170.0, (0.05, 0.09), 0, weight=2),
    GpuModel("RTX 3090", 24576, 860, 36.0, 35.6, 936.0, 350.0, (0.13, 0.24), 0, weight=5),
    GpuModel("RTX 4070 Ti", 12282, 890, 34.0, 40.1, 504.0, 285.0, (0.09, 0.15), 0, weight=2),
    GpuModel("RTX 4080", 16376, 890, 55.0, 48.7, 716.0, 320.0, (0.18, 0.30), 0, weight=2),
    GpuModel("RTX 4090", 24564, 890, 87.0, 82.6, 1008.0, 450.0, (0.28, 0.55), 0, weight=8),
    GpuModel("RTX 5090", 32607, 1200, 120.0, 104.8, 1792.0, 575.0, (0.45, 0.90), 6, weight=5),
    GpuModel("RTX A5000", 24564, 860, 40.0, 27.8, 768.0, 230.0, (0.17, 0.28), 0, weight=2),
    GpuModel("RTX A6000", 49140, 860, 60.0, 38.7, 768.0, 300.0, (0.35, 0.55), 0, weight=3),
    GpuModel("RTX 6000Ada", 49140, 890, 95.0, 91.1, 960.0, 300.0, (0.60, 0.90), 0, weight=2),
    GpuModel("L40S", 46068, 890, 100.0, 91.6, 864.0, 350.0, (0.55, 0.90), 0, True, weight=3),
    GpuModel("A100 PCIE", 40960, 800, 150.0, 19.5, 1555.0, 250.0, (0.55, 0.85), 0, True),
    GpuModel("A100 SXM4", 81920, 800, 198.0, 19.5, 2039.0, 400.0, (0.75, 1.20), 0, True, 2),
    GpuModel("H100 PCIE", 81559, 900, 300.0, 51.2, 2000.0, 350.0, (1.30, 1.90), 1, True),
    GpuModel("H100 SXM", 81559, 900, 412.0, 66.9, 3350.0, 700.0, (1.60, 2.40), 1, True, 3),
    GpuModel("H200", 143771, 900, 450.0, 66.9, 4800.0, 700.0, (2.20, 3.20), 4, True),
)

#: (driver version, highest CUDA it runs), oldest first: CUDA 12.2 .. 13.0.
DRIVERS: tuple[tuple[str, float], ...] = (
    ("535.183.01", 12.2),
    ("545.29.06", 12.3),
    ("550.127.05", 12.4),
    ("555.58.02", 12.5),
    ("560.35.03", 12.6),
    ("565.57.01", 12.7),
    ("570.133.07", 12.8),
    ("575.64.03", 12.9),
    ("580.82.07", 13.0),
)

#: "Region, CC" as Vast writes geolocation; ", US" is how an unknown region looks.
LOCATIONS: tuple[str, ...] = (
    "Texas, US",
    "California, US",
    "Oregon, US",
    "Virginia, US",
    "Utah, US",
    ", US",
    "Quebec, CA",
    "Ontario, CA",
    "Bavaria, DE",
    "Hesse, DE",
    "Noord-Holland, NL",
    "Ile-de-France, FR",
    "England, GB",
    "Stockholm, SE",
    "Mazowieckie, PL",
    "Taiwan, TW",
    "Tokyo, JP",
    "New South Wales, AU",
    "Sao Paulo, BR",
    "Gyeonggi-do, KR",
)

CPUS: tuple[tuple[str, int, float], ...] = (  # name, vCPUs on the machine, GHz
    ("AMD EPYC 7543 32-Core Processor", 64, 2.8),
    ("AMD EPYC 9354 32-Core Processor", 64, 3.25),
    ("AMD EPYC 7B13 64-Core Processor", 128, 2.45),
    ("Intel(R) Xeon(R) Gold 6342 CPU @ 2.80GHz", 96, 2.8),
    ("AMD Ryzen 9 7950X 16-Core Processor", 32, 4.5),
    ("Intel(R) Core(TM) i9-13900K", 32, 3.0),
    ("AMD Ryzen Threadripper PRO 5975WX 32-Cores", 64, 3.6),
)

MOBOS: tuple[str, ...] = ("ROMED8-2T", "H12SSL-i", "ProArt X670E-CREATOR", "WRX80E-SAGE", "X13DEG")
DISKS: tuple[tuple[str, float], ...] = (  # name, MB/s
    ("Samsung SSD 990 PRO 4TB", 3500.0),
    ("WD_BLACK SN850X 2TB", 3300.0),
    ("SAMSUNG MZQL27T6HBLA", 6200.0),
    ("KINGSTON SNV2S2000G", 1800.0),
    ("Micron_7450_MTFDKCC7T6TFR", 5000.0),
)
OS_VERSIONS: tuple[str, ...] = ("22.04", "22.04", "24.04", "20.04")


def numeric_driver(version: str) -> int:
    """'570.124.04' -> 570124004 (each part zero-padded to three digits), as Vast filters it."""
    parts = [*version.split("."), "0", "0"][:3]
    return int("".join(p.zfill(3) for p in parts))


def country_code(geolocation: str) -> str:
    """The two-letter code at the end of "Region, CC"."""
    return geolocation.rsplit(",", 1)[-1].strip()


def geolocode(geolocation: str) -> int:
    """A stable number for a location (Vast filters on a hash it calls geolocode)."""
    code = 0
    for ch in geolocation:
        code = (code * 131 + ord(ch)) % 1_000_003
    return code
