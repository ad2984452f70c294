"""A local, persistent server speaking the Hugging Face Hub HTTP API (``hf_spider hub serve``).

It stands beside the library, not under it: hf_spider reaches it only through the official clients, as it
would reach huggingface.co.
"""

from .server import Account, HubServer, LocalHub, load_tokens

__all__ = ["Account", "HubServer", "LocalHub", "load_tokens"]
