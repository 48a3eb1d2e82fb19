"""A tiny random UMT5 prompt encoder in the Hugging Face folder layout (tokenizer + config + weights).

Built on the fly (a ~120-piece unigram tokenizer trained on a fixed corpus, a random 2-layer encoder of
width `d_model`), so Waypoint-1 prompts can be exercised offline. Needs `transformers` and `tokenizers`.
"""
from __future__ import annotations

from pathlib import Path

import torch

CORPUS = ["an explorable world", "a foggy forest at dawn", "a desert canyon with red rocks",
          "a snowy mountain village at night", "a neon city street in the rain",
          "an underwater cave with glowing plants", "a medieval castle courtyard"] * 4


def write_tiny_umt5(folder: str | Path, d_model: int = 32, seed: int = 0) -> Path:
    """Write the encoder folder; `d_model` must equal the model's prompt_embedding_dim (32 for tiny wp1)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    folder = Path(folder)
    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer=trainer)
    eos_id = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos_id)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>")
    fast.save_pretrained(str(folder))
    config = transformers.UMT5Config(vocab_size=fast.vocab_size, d_model=d_model, d_kv=8, d_ff=64, num_layers=2,
                                     num_heads=4, dropout_rate=0.0, pad_token_id=fast.pad_token_id,
                                     eos_token_id=eos_id)
    torch.manual_seed(seed)
    transformers.UMT5EncoderModel(config).save_pretrained(str(folder))
    return folder
