"""The user's side with the Python API: rank every published model for your images, then re-rank the top 3.

    uv run python examples/user_select.py

Runs on a throw-away local Hub where the 27 micro-zoo models have published their embeddings (as
``hf_spider demo`` does). On huggingface.co: ``select_models(load_task("your-org/your-data"), rerank=3)``.
"""

from hf_spider.demo import DEMO_DATA, ORG, local_hub, publish_zoo

with local_hub():  # sets HF_ENDPOINT before the Hub clients are imported
    from hf_spider.ranking import select_models
    from hf_spider.tasks import load_task

    baseline, _ = publish_zoo()  # the owners' side, done once per model
    task = load_task(DEMO_DATA / "clipart-objects", split="train")  # a folder, a Hub dataset id, or arrays

    plain = select_models(task, baseline=baseline, author=ORG, progress=False)  # no forward pass of any candidate
    print(f"{plain.method}: {plain.forward_passes} forward passes, {plain.seconds:.1f} s")
    for i, c in enumerate(plain.candidates[:5], 1):
        print(f"  {i}. {c.repo_id:40s} fuzzy intersection {c.score:6.2f}")

    reranked = select_models(task, baseline=baseline, author=ORG, rerank=3, progress=False)
    print(f"{reranked.method}: {reranked.forward_passes} forward passes, {reranked.seconds:.1f} s")
    for i, c in enumerate(reranked.candidates[:5], 1):
        logme = "" if c.rerank_score is None else f", LogME {c.rerank_score:.3f}"
        print(f"  {i}. {c.repo_id:40s} fuzzy intersection {c.score:6.2f}{logme}")
