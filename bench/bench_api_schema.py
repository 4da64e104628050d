"""Schemathesis against the service's own OpenAPI schema, every endpoint, three set-ups: no API keys;
keys configured and sent; keys configured and not sent (writes answer 401). Counts generated requests,
server errors and failed checks (response schema, status codes, content types, headers, Allow, ...);
exits 1 when any check failed. See autotag.testing.api_fuzz for what runs.

    nice -n 10 .venv/bin/python bench/bench_api_schema.py --max-examples 50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from autotag.demo import write_photos
    from autotag.testing.api_fuzz import run_schemathesis

    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=50)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_photos(Path(tmp) / "photos")
        chosen = [photos["chelsea"], photos["coffee"]]
        print(f"{'set-up':32s} {'requests':>8s} {'5xx':>4s} {'failed checks':>13s} {'seconds':>8s}")
        for n, (configured, send) in enumerate(((False, False), (True, True), (True, False))):
            r = run_schemathesis(Path(tmp) / f"run{n}", chosen, keys_configured=configured, send_key=send,
                                 max_examples=args.max_examples)  # fmt: skip
            print(f"{r.label:32s} {r.generated:8d} {r.server_errors:4d} {len(r.failures):13d} {r.seconds:8.0f}")
            for line in r.failures:
                print(f"    {line}")
            failed = failed or bool(r.failures) or r.server_errors > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
