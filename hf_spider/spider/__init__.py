"""Model Spider (SPEC §4; Zhang et al., NeurIPS 2023): a learned ranker of pre-trained models.

    from hf_spider.spider import SpiderRanker, rank_models

    ranker = SpiderRanker.from_pretrained("my-org/spider-ranker")
    ranking = rank_models(ranker, encoder_features, labels, embeddings=vectors, rerank=3,
                          candidate_features=lambda i: features_of_candidate(i))

``tokens`` builds task tokens, ``model`` is the ranker and its ListMLE loss, ``training`` samples and
labels tasks from a pool of cached features, ``recipe`` trains a ranker for a zoo end to end,
``predict`` ranks and re-ranks.
"""

from hf_spider.spider.model import SpiderRanker, listmle_loss
from hf_spider.spider.predict import SpiderRanking, rank_models
from hf_spider.spider.recipe import RankerRecipe, TrainingInputs, TrainingReport, train_ranker, training_inputs

__all__ = ["RankerRecipe", "SpiderRanker", "SpiderRanking", "TrainingInputs", "TrainingReport", "listmle_loss",
           "rank_models", "train_ranker", "training_inputs"]
