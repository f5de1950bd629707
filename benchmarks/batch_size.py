"""What ``max_batch_bytes`` costs: ``python benchmarks/batch_size.py [--n 50000]``.

The end-to-end scenario of ``run.py`` (realistic events to a ``none`` collector in another
process) at 256 KiB, 1 MiB and 4 MiB bodies, twice each, alternating, so drift in the shared
machine shows as spread rather than as a difference between settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import run as bench

from hh_exporter import Exporter


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    fields = bench.realistic(args.n)
    proc, url = bench.start_sink("none")
    print(f"{'max_batch_bytes':<18}{'events/s':>12}{'CPU us/ev':>11}{'requests':>10}"
          f"{'ev/request':>12}")
    try:
        for _ in range(2):
            for size in (256 << 10, 1 << 20, 4 << 20):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                async with Exporter(api_key=bench.TOKEN, api_url=url, max_batch_bytes=size,
                                    max_buffer_events=len(fields) * 2,
                                    max_buffer_bytes=1 << 30) as hh:
                    for i, f in enumerate(fields):
                        hh.log_model_event(**f)
                        if i % 1000 == 0:
                            await asyncio.sleep(0)
                    assert await hh.flush(60)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                st = hh.stats()
                print(f"{f'{size >> 10} KiB':<18}{len(fields) / wall:>12,.0f}"
                      f"{cpu / len(fields) * 1e6:>11.1f}{st.requests:>10,}"
                      f"{len(fields) / st.requests:>12.0f}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
