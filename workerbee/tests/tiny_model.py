"""A tiny llama-architecture GGUF written on the fly, for real llama.cpp inference in tests.

Two layers, 64-dimensional, random weights (seeded), F32, and a SentencePiece
("llama") vocabulary: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> that
llama.cpp falls back to, single characters, and a few words with all their
prefixes (the SPM tokenizer only merges pairs whose join is in the vocabulary).
Every token string is unique: llama.cpp aborts the process on duplicates.
The end-of-sequence row of the output matrix is zero, so greedy decoding
practically never ends early and token counts are predictable.

`words_only=True` zeroes every output row but the whole words ("▁hello"): greedy
decoding then writes words that the tokenizer splits back into the very tokens
sampled (the verify tests need that round trip); `chat_template` adds one.
"""

from pathlib import Path

N_EMBD = 64
N_LAYERS = 2
N_HEAD = 4
N_FF = 128
CONTEXT = 512
# Longer than the 32 bytes llama-cpp-python's own detokenize can return.
LONG_PIECE = "▁" + "=" * 40
WORDS = ["hello", "world", "the", "bee", "queen", "worker", "once", "upon", "time", "and", "is", "a", "of"]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces: list[str] = ["▁"]
    pieces += [chr(c) for c in range(33, 127)]
    for word in WORDS:
        for n in range(1, len(word) + 1):
            pieces += [word[:n], "▁" + word[:n]]
    pieces.append(LONG_PIECE)
    pieces = list(dict.fromkeys(pieces))
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # SPM merges the highest-scoring pair first: prefer longer pieces.
    scores = [0.0] * (3 + 256) + [float(len(p)) for p in pieces]
    assert len(set(tokens)) == len(tokens)
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: Path, *, seed: int = 1234, words_only: bool = False, chat_template: str = "") -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)

    def weights(*shape: int, std: float = 0.2) -> "np.ndarray":
        return (rng.standard_normal(shape) * std).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-test")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template:
        writer.add_chat_template(chat_template)

    ones = np.ones(N_EMBD, dtype=np.float32)
    output = weights(n_vocab, N_EMBD, std=0.5)
    output[2] = 0.0  # </s>
    if words_only:
        whole = {"▁" + word for word in WORDS}
        output[[i for i, token in enumerate(tokens) if token not in whole]] = 0.0
    writer.add_tensor("token_embd.weight", weights(n_vocab, N_EMBD, std=1.0))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", output)
    for i in range(N_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(N_EMBD, N_FF))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
