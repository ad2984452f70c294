"""``python -m hf_spider.cli``: the ``hf_spider`` command."""

from . import main

main()
