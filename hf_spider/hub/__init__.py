"""The Hub client: fetch, publish, scan, describe candidates, bounded retries and timeouts."""
