"""Benchmark: what our adapter layer adds per provider call, against calling the same fake with the
official SDK directly. Run by `make bench` (bench/run.py) or alone: `.venv/bin/python bench/adapters.py`.

Both sides talk to the same loopback fake (tests/fakes/) speaking the provider's wire protocol. The
adapter side is what the worker does for one job: `submit()` (input checks, the SDK client, the call
on a background thread) and `poll()` until the result is terminal, without the pipeline's database
work or its poll sleep (polls are 0.5 ms apart). The direct side is one SDK call. The ratio is
adapter ÷ direct, at the median.

    .venv/bin/python bench/adapters.py [--n 200] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402

os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.dev"
os.environ["STUDIO_VAR_DIR"] = str(bench_var_dir("adapters"))


def _time(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _drive(provider, model, inputs) -> None:  # type: ignore[no-untyped-def]
    job = provider.submit(model, inputs, credentials={"api_key": "test-key"})
    while True:
        status = provider.poll(job)
        if status.terminal:
            assert status.state == "succeeded", status.error_message
            return
        time.sleep(0.0005)


def bench_openai(n: int, warmup: int) -> tuple[str, list[float], list[float]]:
    import openai
    from django.conf import settings

    from generations.providers.base import CatalogModel
    from generations.providers.openai import OpenAIProvider
    from tests.fakes.openai import OpenAIFake
    from tests.fakes.server import FakeServer

    with FakeServer(OpenAIFake) as fake:
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "openai": f"{fake.url}/v1"}
        model = CatalogModel(id="openai/gpt-6-luna", provider="openai", provider_model="gpt-6-luna",
                             operation="text-generation", output_kind="text",
                             config={"token_prices": {"input_tokens": "0.10", "output_tokens": "0.50"},
                                     "output_extension": "md"})
        provider = OpenAIProvider()
        client = openai.OpenAI(api_key="test-key", base_url=f"{fake.url}/v1", max_retries=0)

        def direct() -> None:
            client.chat.completions.create(model="gpt-6-luna", messages=[{"role": "user", "content": "hi"}])

        def adapter() -> None:
            _drive(provider, model, {"prompt": "hi"})

        for _ in range(warmup):  # warm-up: imports, connections
            direct()
            adapter()
        return "openai chat", _time(direct, n), _time(adapter, n)


def bench_replicate(n: int, warmup: int) -> tuple[str, list[float], list[float]]:
    import tempfile

    import httpx
    import replicate
    from django.conf import settings

    from generations.providers.base import CatalogModel
    from generations.providers.replicate import ReplicateProvider
    from tests.fakes.replicate import ReplicateFake
    from tests.fakes.server import FakeServer, LocalCA

    ca = LocalCA(Path(tempfile.mkdtemp()) / "ca")
    with FakeServer(ReplicateFake, ca=ca) as fake:
        ReplicateFake.install(fake.state)
        # Straight to a result: both sides then make the same two calls (create, one get).
        fake.state["plan"] = {"starting_polls": 0, "processing_polls": 0}
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "replicate": fake.url}
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        model = CatalogModel(id="replicate/flux-schnell", provider="replicate",
                             provider_model="black-forest-labs/flux-schnell", operation="text-to-image",
                             output_kind="image", config={})
        provider = ReplicateProvider()
        client = replicate.Client(api_token="test-key", base_url=fake.url,
                                  transport=httpx.HTTPTransport(verify=str(ca.ca_file)))

        def direct() -> None:
            prediction = client.models.predictions.create(model="black-forest-labs/flux-schnell",
                                                          input={"prompt": "hi"})
            while prediction.status not in ("succeeded", "failed", "canceled"):
                prediction.reload()

        def adapter() -> None:
            _drive(provider, model, {"prompt": "hi"})

        for _ in range(warmup):
            direct()
            adapter()
        return "replicate prediction", _time(direct, n), _time(adapter, n)


def report(name: str, direct: list[float], adapter: list[float]) -> str:
    d, a = statistics.median(direct), statistics.median(adapter)
    dp, ap = statistics.quantiles(direct, n=20)[18], statistics.quantiles(adapter, n=20)[18]
    return (f"{name:<22} direct SDK {d:6.2f} ms (p95 {dp:6.2f})   adapter {a:6.2f} ms (p95 {ap:6.2f})   "
            f"ratio {a / d:4.2f}x   added {a - d:+.2f} ms")


def main() -> None:
    import logging

    import django

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_ADAPTER_N", "200")),
                        help="timed calls per side (env BENCH_ADAPTER_N; default 200; at least 2, for a p95)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per side first")
    args = parser.parse_args()
    if args.n < 2 or args.warmup < 0:
        parser.error("--n must be at least 2 and --warmup at least 0")
    django.setup()
    for noisy in ("httpx", "httpx2", "httpcore"):  # a line per request would drown the table
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(f"\nadapter layer overhead per call (n={args.n}, loopback fakes)")
    for bench in (bench_openai, bench_replicate):
        name, direct, adapter = bench(args.n, args.warmup)
        print(report(name, direct, adapter))


if __name__ == "__main__":
    main()
