"""Train the tiny reasoner: a llama-architecture model that thinks in `<think>` tags, on 2 CPU cores.

    python training/train_tiny_reasoner.py --out thinkcli/data/tiny-reasoner.gguf [--minutes 75]

Deterministic (fixed seeds), resumable (a checkpoint every few steps in --work; a rerun goes on from
it), and honest about its file: before the GGUF is written, llama.cpp loads it and its logits must
match torch's on a few prompts (and its tokenizer must give the ids torch was trained on).

The model is what llama.cpp's `llama` architecture computes: RMSNorm, RoPE (llama.cpp's "normal"
mode: adjacent pairs rotate), SwiGLU, untied output. The vocabulary is one SPM piece per character
(plus byte fallback, which llama.cpp's SPM tokenizer needs), and the chat template is ChatML with
`enable_thinking` like Qwen3's, so `think` runs it as a native thinking model (family qwen3).
Training text is what `think` renders: thinking on, `<think>\\n{trace}\\n</think>\\n\\n{answer}`; off,
the template's empty block `<think>\\n\\n</think>\\n\\n{answer}`. Only the assistant's tokens are learnt.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout: thinkcli without installing it
from thinkcli.frontends.eval.arithmetic import KINDS, WORDS_ALPHABET, Problem, count_problem, draw

TRAIN_SEED = 20261202  # the eval sets use other seeds (thinkcli/frontends/eval/sets.py)
CHATML_THINK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{% endif %}"
)
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def _characters() -> list[str]:
    import string

    return ["\u2581", "\n", *string.digits, *string.ascii_lowercase, *string.ascii_uppercase, *"?'+-*=:.,"]


PIECES = _characters()


class Tokenizer:
    """Exactly what llama.cpp's SPM tokenizer does with this vocabulary: specials whole, every other
    character its own piece (a space is U+2581), anything else its UTF-8 bytes."""

    def __init__(self) -> None:
        self.tokens = [*SPECIALS, *(f"<0x{b:02X}>" for b in range(256)), *PIECES]
        self.ids = {piece: i for i, piece in enumerate(self.tokens)}
        self.byte0 = len(SPECIALS)

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            for special in SPECIALS[3:]:
                if text.startswith(special, i):
                    out.append(self.ids[special])
                    i += len(special)
                    break
            else:
                ch = "\u2581" if text[i] == " " else text[i]
                if ch in self.ids:
                    out.append(self.ids[ch])
                else:
                    out.extend(self.byte0 + b for b in ch.encode("utf-8"))
                i += 1
        return out


# What `think` inserts when a thinking cap is reached (the qwen3 family's budget message and close tag).
BUDGET_END = "\n\nConsidering the limited time, I have to give the solution based on the thinking directly now.\n</think>\n"


def chat_text(problem: Problem, thinking: bool, cut: int | None = None, at_line: bool = False) -> list[tuple[str, bool]]:
    """What `think` renders for one problem, as (text, learnt) pieces: the prompt and anything a policy
    inserts are given, only the model's own words are learnt.

    Thinking off, the template's empty think block ends the prompt (given, so the model never learns
    to skip thinking by itself when it is on). `cut` ends the trace early as a policy does, and the
    answer still follows: mid-line with the budget message (a cap), or after line `cut` with the bare
    close tag (a trial answer or a stop once the answer is known). An answer after an early cut is a
    guess the model cannot make sure of, so its confidence there is low, and high once the trace has
    said `so ANSWER`: what lets a trial answer tell a known answer from a guess."""
    prompt = f"<|im_start|>user\n{problem.question}<|im_end|>\n<|im_start|>assistant\n"
    if not thinking:
        return [(prompt + "<think>\n\n</think>\n\n", False), (f"{problem.answer}<|im_end|>\n", True)]
    if cut is None:
        return [(prompt, False), (f"<think>\n{problem.trace}\n</think>\n\n{problem.answer}<|im_end|>\n", True)]
    if at_line:
        lines = problem.trace.split("\n")
        return [(prompt, False), ("<think>\n" + "\n".join(lines[:cut]) + "\n", True), ("</think>\n", False),
                (f"\n{problem.answer}<|im_end|>\n", True)]
    return [(prompt, False), (f"<think>\n{problem.trace[:cut]}", True), (BUDGET_END, False),
            (f"\n{problem.answer}<|im_end|>\n", True)]


# -- the model ---------------------------------------------------------------------------------
def build_model(vocab: int, width: int, layers: int, heads: int, ff: int, context: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float = 1e-5):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    head_dim = width // heads
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv)  # (context, head_dim/2)
    cos, sin = angles.cos(), angles.sin()

    def rope(x):  # type: ignore[no-untyped-def]
        """llama.cpp's normal RoPE: the pairs (x0, x1), (x2, x3) … of each head rotate."""
        t = x.shape[2]
        pairs = x.float().reshape(*x.shape[:-1], head_dim // 2, 2)
        c, s = cos[:t].view(1, 1, t, -1), sin[:t].view(1, 1, t, -1)
        first, second = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((first * c - second * s, first * s + second * c), dim=-1)
        return rotated.reshape(x.shape)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn_norm = RMSNorm(width)
            self.q = nn.Linear(width, width, bias=False)
            self.k = nn.Linear(width, width, bias=False)
            self.v = nn.Linear(width, width, bias=False)
            self.o = nn.Linear(width, width, bias=False)
            self.ffn_norm = RMSNorm(width)
            self.gate = nn.Linear(width, ff, bias=False)
            self.up = nn.Linear(width, ff, bias=False)
            self.down = nn.Linear(ff, width, bias=False)

        def forward(self, x):  # type: ignore[no-untyped-def]
            b, t, _ = x.shape
            h = self.attn_norm(x)
            q = self.q(h).view(b, t, heads, head_dim).transpose(1, 2)
            k = self.k(h).view(b, t, heads, head_dim).transpose(1, 2)
            v = self.v(h).view(b, t, heads, head_dim).transpose(1, 2)
            attended = torch.nn.functional.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.o(attended.transpose(1, 2).reshape(b, t, width))
            h = self.ffn_norm(x)
            return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = RMSNorm(width)
            self.output = nn.Linear(width, vocab, bias=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02 / (math.sqrt(2 * layers) if name.endswith(("o.weight", "down.weight")) else 1))

        def forward(self, ids):  # type: ignore[no-untyped-def]
            x = self.embed(ids)
            for block in self.blocks:
                x = block(x)
            return self.output(self.norm(x))

    return Model()


# -- data --------------------------------------------------------------------------------------
def _rich_count(rng: random.Random, band: bool | None) -> Problem:
    """A letter count whose word holds the asked letter often (15-50 % of its letters): a drawn word holds
    it about once, so nearly every count line says `no` and a model learns that before it learns to
    compare the two letters of a line; these words give the `yes` lines their share."""
    length = rng.randint(3, 6) if band is False else rng.randint(3, 20)
    letter = rng.choice(WORDS_ALPHABET)
    share = rng.choice((0.15, 0.3, 0.5))
    word = "".join(letter if rng.random() < share else rng.choice(WORDS_ALPHABET) for _ in range(length))
    return count_problem(letter, word)


def _balanced_count(rng: random.Random, band: bool | None) -> Problem:
    """A letter count whose answer is drawn evenly from 0 to 3: in drawn words the letter is there about
    once, so a model answering without its trace learns to say `1` to every count (it did, 105 times
    in 108) and never to compare the word with the letter; here `1` is right a quarter of the time."""
    length = rng.randint(3, 6) if band is False else rng.randint(3, 20)
    letter = rng.choice(WORDS_ALPHABET)
    others = [c for c in WORDS_ALPHABET if c != letter]
    count = rng.randint(0, min(3, length))
    at = set(rng.sample(range(length), count))
    return count_problem(letter, "".join(letter if i in at else rng.choice(others) for i in range(length)))


def parse_kind_weights(text: str) -> dict[str, float]:
    """`sub=3,mul=2`: a weight for each kind named, 1 for the rest."""
    weights = dict.fromkeys(KINDS, 1.0)
    for part in filter(None, text.split(",")):
        kind, _, value = part.partition("=")
        if kind.strip() not in weights:
            raise SystemExit(f"--direct-kinds: {kind.strip()!r} is not one of {', '.join(KINDS)}")
        weights[kind.strip()] = float(value)
    return weights


def _kind(rng: random.Random, thinking: bool, count_weight: float, direct_kinds: dict[str, float] | None) -> str:
    if not thinking and direct_kinds is not None:
        return rng.choices(KINDS, weights=[direct_kinds[k] for k in KINDS])[0]
    if count_weight == 1:
        return rng.choice(KINDS)
    return rng.choices(KINDS, weights=[count_weight if k == "count" else 1.0 for k in KINDS])[0]


def _size_band(rng: random.Random, thinking: bool, easy_direct: float, mid_direct: float) -> tuple[bool | None, bool]:
    """(`hard`, `middle`) for `draw`: a trace of any size; a direct answer from the easy band, the middle
    band or any size, by the shares asked (one roll, drawn only for a direct answer, as every stage did)."""
    if thinking:
        return None, False
    roll = rng.random()
    return (False if roll < easy_direct else None), easy_direct <= roll < easy_direct + mid_direct


def batches(tokenizer: Tokenizer, seed: int, rows: int, length: int, think_share: float,  # type: ignore[no-untyped-def]
            easy_direct: float, cut_share: float, count_weight: float = 1.0, rich_counts: float = 0.0,
            direct_weight: float = 1.0, balanced_counts: float = 0.0,
            direct_kinds: dict[str, float] | None = None, mid_direct: float = 0.0):
    """Endless (ids, targets, mask) batches: whole problems packed into rows of `length` tokens (one
    that does not fit starts the next row; the rest of a row is padding), the loss only on what the
    model says. `easy_direct` of the direct (thinking off) answers come from the easy band: a direct
    answer is only learnable on small numbers, and uniform sizes spend most of them on numbers no
    4-layer pass can add in its head. `direct_weight` scales a direct answer's tokens in the loss: a
    direct answer is three tokens against a trace's hundreds, so unweighted it gets about 1 % of the
    gradient and the answers without thinking lag. `direct_kinds` weighs the kinds among the direct
    answers alone (None: as among the traces, by `count_weight`). `mid_direct` of the direct answers
    come from the middle band (3-4 digits): none of them is right without a trace, and a model taught
    direct answers on the easy band alone grows as sure of these wrong answers as of its right ones,
    which the probe then keeps; learnt with their true answers, they teach it doubt there."""
    import torch

    rng = random.Random(seed)
    pad = tokenizer.ids["</s>"]

    def sample() -> tuple[list[int], list[float]]:
        thinking = rng.random() < think_share
        band, middle = _size_band(rng, thinking, easy_direct, mid_direct)
        kind = _kind(rng, thinking, count_weight, direct_kinds)
        problem = draw(rng, kind, band, middle)
        if kind == "count" and not thinking and rng.random() < balanced_counts:
            problem = _balanced_count(rng, band)
        elif kind == "count" and rng.random() < rich_counts:
            problem = _rich_count(rng, band)
        cut, at_line = None, False
        if thinking and rng.random() < cut_share:
            at_line = rng.random() < 0.5
            cut = rng.randint(1, problem.trace.count("\n") + 1) if at_line else rng.randrange(len(problem.trace))
        ids: list[int] = []
        mask: list[float] = []
        weight = 1.0 if thinking else direct_weight
        for text, learnt in chat_text(problem, thinking, cut, at_line):
            piece = tokenizer.encode(text)
            ids += piece
            mask += [weight if learnt else 0.0] * len(piece)
        return ids, mask

    waiting = sample()
    while True:
        all_ids, all_mask = [], []
        for _ in range(rows):
            row_ids: list[int] = []
            row_mask: list[float] = []
            while len(row_ids) + len(waiting[0]) <= length + 1:
                row_ids += waiting[0]
                row_mask += waiting[1]
                waiting = sample()
            if not row_ids:  # an empty row would make the loss 0/0 and poison every weight
                raise SystemExit(f"a problem of {len(waiting[0])} tokens does not fit a row of {length}")
            row_mask += [0.0] * (length + 1 - len(row_ids))
            row_ids += [pad] * (length + 1 - len(row_ids))
            all_ids.append(row_ids)
            all_mask.append(row_mask)
        ids, mask = torch.tensor(all_ids), torch.tensor(all_mask)
        yield ids[:, :-1], ids[:, 1:], mask[:, 1:]


# -- GGUF --------------------------------------------------------------------------------------
TENSOR_NAMES = {"attn_norm.weight": "attn_norm.weight", "q.weight": "attn_q.weight", "k.weight": "attn_k.weight",
                "v.weight": "attn_v.weight", "o.weight": "attn_output.weight", "ffn_norm.weight": "ffn_norm.weight",
                "gate.weight": "ffn_gate.weight", "up.weight": "ffn_up.weight", "down.weight": "ffn_down.weight"}


def gguf_names(layers: int) -> dict[str, str]:
    """torch state-dict name -> GGUF tensor name."""
    names = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight", "output.weight": "output.weight"}
    for i in range(layers):
        names.update({f"blocks.{i}.{ours}": f"blk.{i}.{theirs}" for ours, theirs in TENSOR_NAMES.items()})
    return names


def load_gguf(model, path: Path, layers: int) -> None:  # type: ignore[no-untyped-def]
    """Start from an earlier stage's GGUF (F32, written by write_gguf): the second training stage
    fine-tunes the shipped model instead of training from nothing again."""
    import gguf
    import torch

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    state = model.state_dict()
    for ours, theirs in gguf_names(layers).items():
        data = np.array(tensors[theirs].data, dtype=np.float32).reshape(state[ours].shape)
        state[ours] = torch.from_numpy(data.copy())
    model.load_state_dict(state)


def write_gguf(model, tokenizer: Tokenizer, config: dict, path: Path) -> None:  # type: ignore[no-untyped-def]
    import gguf

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(temp), "llama")
    w.add_name("tiny-reasoner")
    w.add_context_length(config["context"])
    w.add_embedding_length(config["width"])
    w.add_block_count(config["layers"])
    w.add_feed_forward_length(config["ff"])
    w.add_head_count(config["heads"])
    w.add_head_count_kv(config["heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(config["width"] // config["heads"])
    w.add_vocab_size(len(tokenizer.tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    T = gguf.TokenType
    types = ([T.UNKNOWN, T.CONTROL, T.CONTROL, T.CONTROL, T.CONTROL, T.USER_DEFINED, T.USER_DEFINED]
             + [T.BYTE] * 256 + [T.NORMAL] * len(PIECES))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokenizer.tokens)
    w.add_token_scores([0.0] * len(tokenizer.tokens))
    w.add_token_types([int(t) for t in types])
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokenizer.ids["<|im_end|>"])
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML_THINK_TEMPLATE)
    for ours, theirs in gguf_names(config["layers"]).items():
        w.add_tensor(theirs, sd[ours])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    check_against_llama_cpp(model, tokenizer, temp)
    temp.replace(path)


PROBABILITY_TOLERANCE = 1e-2  # how far llama.cpp's token probabilities may stray from torch's


def check_against_llama_cpp(model, tokenizer: Tokenizer, path: Path) -> None:  # type: ignore[no-untyped-def]
    """llama.cpp must tokenize as we trained and compute the logits torch computes."""
    import torch
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=1024, logits_all=True, verbose=False, n_threads=2)
    rng = random.Random(7)
    worst, positions, agree = 0.0, 0, 0
    for kind in KINDS:
        text = "".join(piece for piece, _ in chat_text(draw(rng, kind, hard=True), thinking=True))
        ours = tokenizer.encode(text)
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if ours != theirs:
            raise SystemExit(f"tokenizers differ on {text[:60]!r}: {ours[:20]} vs {theirs[:20]}")
        llm.reset()
        llm.eval(theirs)
        cpp = np.array(llm.scores[: len(theirs)])
        with torch.no_grad():
            py = model(torch.tensor([ours]))[0].numpy()
        # log-probabilities, the scale sampling sees (raw logits grow with training, and so do float32
        # rounding differences between two summation orders)
        cpp_lp = cpp - np.log(np.exp(cpp - cpp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - cpp.max(-1, keepdims=True)
        py_lp = py - np.log(np.exp(py - py.max(-1, keepdims=True)).sum(-1, keepdims=True)) - py.max(-1, keepdims=True)
        py_p = np.exp(py_lp)
        worst = max(worst, float(np.abs(np.exp(cpp_lp) - py_p).max()))
        positions += len(ours)
        # the top token must agree, except at a near tie (two tokens within the tolerance), which float
        # rounding may tip either way: a sampler cannot tell such tokens apart either
        top2 = np.sort(py_p, axis=-1)[:, -2:]
        tie = (top2[:, 1] - top2[:, 0]) <= PROBABILITY_TOLERANCE
        agree += int(((cpp.argmax(-1) == py.argmax(-1)) | tie).sum())
    llm.close()
    if worst > PROBABILITY_TOLERANCE or agree < positions:
        raise SystemExit(f"llama.cpp differs from torch (probability by up to {worst:.2e}; the same top token, or a "
                         f"near tie, at {agree} of {positions} positions): the GGUF is wrong")
    print(f"llama.cpp matches torch: token probabilities within {worst:.1e}, the same top token (or a near tie) at "
          f"all {positions} positions of {len(KINDS)} prompts", flush=True)


# -- training ----------------------------------------------------------------------------------
def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("thinkcli/data/tiny-reasoner.gguf"))
    parser.add_argument("--work", type=Path, default=Path(".train"))
    parser.add_argument("--minutes", type=float, default=75.0, help="stop training after this long (a resumed run counts from its start)")
    parser.add_argument("--steps", type=int, default=1400, help="the learning-rate schedule's length")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--think-share", type=float, default=0.55)
    parser.add_argument("--easy-direct", type=float, default=0.8,
                        help="share of the direct answers drawn from the easy band (1-2 digits, short words)")
    parser.add_argument("--cut-share", type=float, default=0.2,
                        help="share of the traces cut early (half by a cap's message, half by a bare close tag after a line)")
    parser.add_argument("--count-weight", type=float, default=1.0,
                        help="how often letter counts are drawn against each other kind (their letter lookup learns last)")
    parser.add_argument("--rich-counts", type=float, default=0.0,
                        help="share of the letter counts drawn with the asked letter frequent in the word (its yes lines)")
    parser.add_argument("--direct-weight", type=float, default=1.0,
                        help="loss weight of a direct (thinking off) answer's tokens against a trace's")
    parser.add_argument("--balanced-counts", type=float, default=0.0,
                        help="share of the direct (thinking off) letter counts drawn with answers even over 0-3")
    parser.add_argument("--direct-kinds", type=parse_kind_weights, default=None,
                        help="weights of the kinds among the direct answers alone, e.g. sub=3,mul=2 (default: as the traces)")
    parser.add_argument("--mid-direct", type=float, default=0.0,
                        help="share of the direct answers drawn from the middle band (3-4 digits), to learn doubt there")
    parser.add_argument("--init-from", type=Path, help="a stage's GGUF to fine-tune (a fresh --work starts from it)")
    parser.add_argument("--seed-offset", type=int, default=0, help="a later stage draws other problems")
    parser.add_argument("--export-only", action="store_true", help="write the GGUF from the last checkpoint")
    args = parser.parse_args()
    if args.easy_direct + args.mid_direct > 1:
        raise SystemExit("--easy-direct and --mid-direct together must be at most 1")

    torch.manual_seed(TRAIN_SEED)
    torch.set_num_threads(2)
    tokenizer = Tokenizer()
    config = {"width": args.width, "layers": args.layers, "heads": args.heads, "ff": 3 * args.width,
              "context": 1024, "vocab": len(tokenizer.tokens)}
    model = build_model(config["vocab"], config["width"], config["layers"], config["heads"], config["ff"],
                        config["context"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / "checkpoint.pt"
    step, spent = 0, 0.0
    # what this stage was trained with, kept in its checkpoint: an --export-only run records the stage's
    # own settings, not the flags it was started with
    recipe = {"seed": TRAIN_SEED + args.seed_offset, "think_share": args.think_share, "easy_direct": args.easy_direct,
              "cut_share": args.cut_share, "count_weight": args.count_weight, "rich_counts": args.rich_counts,
              "lr": args.lr, "direct_weight": args.direct_weight, "balanced_counts": args.balanced_counts,
              "direct_kinds": args.direct_kinds, "mid_direct": args.mid_direct, "empty_block": "prompt"}
    if args.init_from and not checkpoint.exists():
        load_gguf(model, args.init_from, config["layers"])
        print(f"starting from {args.init_from}", flush=True)
    if checkpoint.exists():
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, spent = state["step"], state.get("elapsed", 0.0)
        if args.export_only:
            recipe = state.get("recipe", recipe)
        print(f"resumed at step {step} ({spent / 60:.1f} minutes in)", flush=True)
    if not args.export_only:
        params = sum(p.numel() for p in model.parameters())
        print(f"{params / 1e6:.2f} M parameters; {args.rows}x{args.length} tokens a step", flush=True)
        data = batches(tokenizer, TRAIN_SEED + args.seed_offset + step, args.rows, args.length, args.think_share,
                       args.easy_direct, args.cut_share, args.count_weight, args.rich_counts, args.direct_weight,
                       args.balanced_counts, args.direct_kinds, args.mid_direct)
        started = time.monotonic() - spent
        log = open(args.work / "log.jsonl", "a")  # noqa: SIM115 (open for the whole run)

        def save() -> None:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "elapsed": time.monotonic() - started, "recipe": recipe}, args.work / "checkpoint.tmp")
            (args.work / "checkpoint.tmp").replace(checkpoint)

        while step < args.steps and time.monotonic() - started < args.minutes * 60:
            ids, targets, mask = next(data)
            warm = min(1.0, (step + 1) / 50)
            # cosine decay over the steps or the minutes, whichever runs out first
            progress = min(1.0, max(step / args.steps, (time.monotonic() - started) / (args.minutes * 60)))
            lr = args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(ids)
            losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                       reduction="none")
            weights = mask.reshape(-1)
            learnt = (weights > 0).float()
            loss = (losses * weights).sum() / weights.sum()  # what is optimised
            plain = (losses * learnt).sum() / learnt.sum()  # every learnt token alike: comparable across stages
            direct = weights > 1.0 if args.direct_weight > 1 else None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            record = {"step": step, "loss": round(plain.item(), 4), "lr": round(lr, 6),
                      "s": round(time.monotonic() - started, 1)}
            if direct is not None and direct.any():
                record["direct_loss"] = round(losses[direct].mean().item(), 4)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step % 10 == 0:
                print(json.dumps(record), flush=True)
            if step % 25 == 0:
                save()
        save()
    model.eval()
    write_gguf(model, tokenizer, config, args.out)
    stage = {"steps": step, **recipe}
    earlier = args.init_from.with_suffix(".json") if args.init_from else None
    stages = json.loads(earlier.read_text()).get("stages", []) if earlier and earlier.exists() else []
    meta = {**config, "stages": [*stages, stage]}
    (args.out.with_suffix(".json")).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} after {step} steps", flush=True)


if __name__ == "__main__":
    main()
