"""The files hf_spider reads and writes, independent of where they are stored: the embedding file (SPEC §5)
and weights files' headers."""
