"""The model owner's side with the Python API: embed a model once and publish the vector in its own repo.

    uv run python examples/owner_embed.py

Runs on a throw-away local Hub with two models of the bundled micro zoo and a bundled reference set. On
huggingface.co the same call is ``embed_repo("your-org/your-model")``: the defaults are the paper's baseline
(``timm/resnet18.a1_in1k``) and reference set (ImageNet validation images).
"""

from hf_spider.demo import DEMO_DATA, ZOO_DIR, local_hub

with local_hub():  # sets HF_ENDPOINT before the Hub clients are imported
    from huggingface_hub import HfApi

    from hf_spider.embedder.pipeline import embed_repo

    api = HfApi()
    for name in ("resnet18-all-mix", "vit-animals"):  # the public baseline and the owner's model
        api.create_repo(f"my-org/{name}")
        api.upload_folder(folder_path=ZOO_DIR / "models" / name, repo_id=f"my-org/{name}")
    api.create_repo("my-org/reference", repo_type="dataset")  # the baseline's public reference images
    api.upload_folder(folder_path=DEMO_DATA / "clipart-objects", repo_id="my-org/reference", repo_type="dataset")

    result = embed_repo("my-org/vit-animals", baseline="my-org/resnet18-all-mix", reference="my-org/reference",
                        steps=500)
    print(f"published {result.vector.size} values in one commit: {result.commit_url}")
    print(f"fidelity L_to={result.metadata['fidelity_to']}, L_from={result.metadata['fidelity_from']}")
    again = embed_repo("my-org/vit-animals", baseline="my-org/resnet18-all-mix", reference="my-org/reference",
                       steps=500)
    print("a second run is a no-op:", again.up_to_date)
    print("the repo is now tagged:", api.model_info("my-org/vit-animals").tags)
