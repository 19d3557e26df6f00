"""Time the full identity prompt set per model (local backend), and print the figures.

    .venv/bin/python bench/identity_bench.py [MODEL ...] [--samples 3] [--device auto] [--batch-size 48]

Without MODEL arguments it times the tiny persona fixtures under tests/identity/fixtures/. Each model
is asked every prompt ``samples`` times with and (when declared) without its system prompt, exactly as
``provbot identity`` does; load time is reported separately.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--samples", type=int, default=None, help="Default: the prompt set's value.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--cpu-threads", type=int, default=None, help="torch threads while generating on CPU.")
    args = ap.parse_args()

    import torch

    from provbot.detectors.identity import run_identity
    from provbot.detectors.identity.backends.local import LocalBackend
    from tests.support.personas import PERSONA_DIRS

    models = args.models or [str(p) for p in PERSONA_DIRS.values()]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    for ref in models:
        t0 = time.perf_counter()
        LocalBackend.open(ref, device=args.device)
        load_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as cache:
            r = run_identity(
                ref,
                samples=args.samples,
                device=args.device,
                batch_size=args.batch_size,
                cpu_threads=args.cpu_threads,
                cache_dir=cache,
            )
        conds = len(r.conditions)
        print(
            f"{Path(ref).name:16s} device {r.backend.device:4s} prompts {r.prompts} x samples {r.sampling.samples}"
            f" x conditions {conds} = {r.generations} answers (max {r.sampling.max_tokens} tokens): "
            f"{r.seconds:.1f} s total, load {load_s:.1f} s, {r.seconds / max(r.generations, 1) * 1000:.0f} ms/answer"
        )


if __name__ == "__main__":
    main()
