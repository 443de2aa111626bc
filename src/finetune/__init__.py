"""finetune-pipeline: fine-tune Hugging Face encoders on classification, NER and extractive QA."""

__version__ = "0.1.0"
