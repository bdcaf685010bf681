"""A stand-in for the bundled model where its file cannot be had (an offline GPU machine).

SmolLM2-135M's architecture (30 layers, 576 wide, grouped-query attention;
its own output layer) with random weights, and a byte-level tokenizer with
ChatML's special tokens, chat template and a few hundred words to write: the
torch backend loads it like the real converted model, so its dtype, cache and
streaming can be checked and its speed measured (a random model writes
nonsense, at the real model's speed less its smaller vocabulary). Nothing is
downloaded.
"""

from __future__ import annotations

from pathlib import Path

from mongars_plugins.cuda import model as model_files

WORDS = 256
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ARCHITECTURE = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": False,
}


def build_standin(models: Path) -> Path:
    """Write the stand-in where the torch backend looks for the model under ``models``
    (``MONGARS_LOCAL__MODEL_DIR``); returns its folder."""
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers import models as token_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = models / model_files.MODEL_NAME
    if model_files.is_ready(target):
        return target
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    # Prompts are read byte by byte (no merges); replies are written in words
    # ("Ġw7" decodes as " w7"), so they stream a word at a time like the real model's.
    words = [f"Ġw{index}" for index in range(WORDS)]
    vocab = {token: index for index, token in enumerate(SPECIAL + alphabet + words)}
    core = Tokenizer(token_models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
        **ARCHITECTURE,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # only words can score above 0 (prompts still read bytes)
        model.get_output_embeddings().weight[: len(SPECIAL) + len(alphabet)] = 0
    target.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(target))
    model.save_pretrained(str(target))
    return target
