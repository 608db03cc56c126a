"""A real, tiny ``LlamaForCausalLM`` (2 layers, 32 wide) with a byte-level BPE tokenizer trained here and a chat
template: what the copywriting and LoRA tests load as a transformers model directory, offline, in a second."""

from __future__ import annotations

from pathlib import Path

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_tiny_llama(path: Path, corpus: list[str], vocab_size: int, initializer_range: float = 0.02) -> Path:
    """Write the model and tokenizer to ``path``; the tokenizer's merges come from ``corpus``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    fast.chat_template = CHAT
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                      initializer_range=initializer_range)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path
