"""Run a local Hub, push a timm model to it with timm's own code, and load it back.

    uv run python examples/local_hub.py

Everything goes through the official clients pointed at the local server by HF_ENDPOINT,
exactly as they would talk to huggingface.co.
"""

import os
import tempfile

from hf_spider.localhub.server import LocalHub

hub = LocalHub(tempfile.mkdtemp(prefix="hubdata-")).start()
os.environ["HF_ENDPOINT"] = hub.url  # before importing huggingface_hub / timm
os.environ.setdefault("HF_TOKEN", "local")

import timm  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from timm.models import push_to_hf_hub  # noqa: E402

model = timm.create_model("resnet10t", num_classes=10).eval()
push_to_hf_hub(model, "my-org/resnet10t-demo")
reloaded = timm.create_model("hf-hub:my-org/resnet10t-demo", pretrained=True).eval()
x = torch.randn(1, 3, 64, 64)
with torch.inference_mode():
    print("identical outputs after the round trip:", torch.equal(model(x), reloaded(x)))
for info in HfApi().list_models(author="my-org"):
    print(info.id, info.tags)
hub.stop()
