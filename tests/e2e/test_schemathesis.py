"""Schemathesis against a live `tuneyard serve`: every operation, every check, seeded and bounded.

benchmarks/api_fuzz.py does the work (serve with no workers, a member key, an admin key, /v1/keys
under an organization of its own, the dataset the documented examples name) and this holds its run
to 0 server errors and 0 failed checks, on SQLite and on PostgreSQL. Its longer run (--max-examples
100, over 10,000 requests) is for figures, not CI.
"""

from __future__ import annotations

import pytest

from benchmarks import api_fuzz

SEED = 17
MAX_EXAMPLES = 6  # about a thousand requests, under two and a half minutes per database on two busy cores


@pytest.mark.timeout(480)
def test_schemathesis_finds_nothing(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = api_fuzz.main(["--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--database-url", database_url])
    with capsys.disabled():
        print(f"\n[{database_url.split(':')[0]}] {result.requests} requests in {result.seconds:.0f} s, statuses "
              + ", ".join(f"{status} × {n}" for status, n in sorted(result.statuses.items())))
    assert result.requests > 500, result.output[-4000:]
    assert result.server_errors == 0, api_fuzz.failure_details(result.output)
    assert result.failures == [], api_fuzz.failure_details(result.output)
    assert result.errors == 0, api_fuzz.failure_details(result.output)
    assert result.exit_code == 0, result.output[-4000:]
    # The fuzzer reached past the doors: things were made, read and deleted, not only refused.
    assert result.statuses[201] and result.statuses[200] and result.statuses[204]
