"""Helpers for tests and benchmarks (not used by the package itself): a throwaway PostgreSQL server
(`autotag.testing.postgres`) and a deterministic fake encoder (`autotag.testing.fake`)."""
