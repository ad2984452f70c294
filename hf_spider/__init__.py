"""hf_spider: which pre-trained model on the Hugging Face Hub should I fine-tune for my task?"""

__version__ = "0.1.0"
