"""Customer-support reply agent: TWCS data, rule layer, QLoRA vs prompt tuning, evaluation."""
import logging

# On CPUs with AVX512-BF16, bitsandbytes tries the `kernels` package, which downloads a 4-bit kernel from the
# Hugging Face Hub at run time, and warns in every process when it is absent: noise a user cannot act on, since
# this project loads nothing from the Hub at run time and serving folds the 4-bit layers into dense ones
# (`serving.fold_4bit`). Set here, before any module of the package can import bitsandbytes (peft and
# transformers import it on their own when it is installed).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"
