"""Customer-support reply agent: TWCS data, rule layer, QLoRA vs prompt tuning, evaluation."""
__version__ = "0.1.0"
