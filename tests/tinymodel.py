"""Write tiny random-weight llama GGUFs that real llama.cpp loads and runs in milliseconds.

Following the recipe in shared/NOTES.md: residual dimension 0 is held constant, so
`output.weight[:, 0]` acts as a per-token logit bias baked into the weights. That lets a test
build a model that never stops thinking (budget caps are hit exactly), one that closes its
thinking at once (for "Wait"), or one that is almost certain of every token (confidence stop).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

CHATML_THINK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)

UNK, BOS, EOS, IM_START, IM_END, THINK, END_THINK = range(7)
BYTE0 = 7
WORDS = ["\u2581", "\u2581Wait", "\u2581the", "\u2581answer", "\u2581is", "\n"]
WORDS += [chr(c) for c in range(ord("a"), ord("z") + 1)]
WORDS += [chr(c) for c in range(ord("0"), ord("9") + 1)]
FIRST_WORD = BYTE0 + 256


def byte_token(b: int) -> int:
    return BYTE0 + b


def word_token(word: str) -> int:
    return FIRST_WORD + WORDS.index(word)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL, T.CONTROL, T.CONTROL, T.USER_DEFINED, T.USER_DEFINED]
    scores = [0.0] * len(tokens)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(T.BYTE)
    for i, word in enumerate(WORDS):
        tokens.append(word)
        scores.append(-float(i))
        types.append(T.NORMAL)
    return tokens, scores, [int(t) for t in types]


# Biases for the variants tests need.
_BANNED_ALWAYS = [UNK, BOS, EOS] + [byte_token(b) for b in range(0x80, 0x100)] + [byte_token(b) for b in range(0x20)]
_SENTENCE = [byte_token(ord(c)) for c in ".!?\n"] + [word_token("\n")]


def variant_bias(variant: str) -> dict[int, float] | None:
    if variant == "random":
        return None
    ban = {tok: -100.0 for tok in _BANNED_ALWAYS + _SENTENCE + [THINK, IM_START]}
    if variant == "tame":  # never closes thinking, never ends: caps are hit exactly
        return {**ban, IM_END: -100.0, END_THINK: -100.0}
    if variant == "closer":  # closes its thinking at once, then answers a little and ends
        return {**ban, END_THINK: 30.0, IM_END: -2.0}
    if variant == "confident":  # nearly always the same letter: high token confidence
        return {**ban, IM_END: -100.0, END_THINK: -100.0, word_token("a"): 40.0}
    if variant == "ender":  # ends the turn at once (EOS inside thinking)
        return {**ban, IM_END: 40.0}
    raise ValueError(variant)


def write_tiny_gguf(path: Path, variant: str = "tame", seed: int = 0, template: str | None = CHATML_THINK_TEMPLATE,
                    n_ctx: int = 2048, truncate: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    n_embd, n_head, n_head_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    head_dim = n_embd // n_head
    bias = variant_bias(variant)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tiny-{variant}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(IM_END)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(False)
    if template is not None:
        w.add_chat_template(template)

    def r(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    emb = r(n_vocab, n_embd, scale=1.0)
    out = r(n_vocab, n_embd, scale=1.0)
    if bias:
        emb[:, 0] = 10.0
        out[:, 0] = 0.0
        for tok, b in bias.items():
            out[tok, 0] = b
    w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", out)
    for i in range(n_layer):
        wo, down = r(n_embd, n_head * head_dim), r(n_embd, n_ff)
        if bias:
            wo[0, :] = 0.0
            down[0, :] = 0.0
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", r(n_head * head_dim, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", r(n_head_kv * head_dim, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", r(n_head_kv * head_dim, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", wo)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", r(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", r(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", down)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path
