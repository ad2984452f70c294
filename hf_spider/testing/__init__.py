"""Test tooling shipped with hf_spider: a proxy that injects network faults between a client and a Hub."""
