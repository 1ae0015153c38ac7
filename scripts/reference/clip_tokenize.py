#!/usr/bin/python3
"""Reference CLIP tokenization: OpenAI's SimpleTokenizer and clip.tokenize, for glimpse's parity tests.

The algorithm is OpenAI CLIP's (github.com/openai/CLIP, clip/simple_tokenizer.py and clip/clip.py, MIT):
bytes_to_unicode, get_pairs, the cached bpe(), the `regex` pattern with IGNORECASE, `<|startoftext|>` /
`<|endoftext|>`, and tokenize(texts, context_length=77, truncate=True).

One part is a stand-in: OpenAI's basic_clean calls ftfy.fix_text, and ftfy cannot be installed here.
`ftfy_subset` below implements the steps of ftfy 6's fix_text defaults that change ordinary text,
looped to a fixed point as ftfy does:
  - unescape_html ("auto": only when the text has no "<"): `&name;` entities (HTML5, with semicolon,
    plus upper-cased names such as `&NTILDE;`) and numeric `&#..;` ones;
  - fix_c1_controls (U+0080-U+009F decoded as Windows-1252, undefined bytes kept);
  - fix_latin_ligatures; fix_character_width (fullwidth / halfwidth forms -> NFKC, U+3000 -> space);
  - uncurl_quotes (U+02BC, U+2018-U+201B -> ', U+201C-U+201F -> ");
  - fix_line_breaks (CRLF, CR, U+2028, U+2029, U+0085 -> LF); fix_surrogates (lone ones -> U+FFFD);
  - remove_terminal_escapes (ANSI CSI sequences); remove_control_chars (ftfy's table);
  - NFC normalization.
Not replicated: fix_encoding (mojibake repair, incl. restore_byte_a0, replace_lossy_sequences,
decode_inconsistent_utf8). Python's real html.unescape then runs twice, as in OpenAI's basic_clean.
src/decode/tokenize.ts implements the same subset; this file is what it is checked against.

Run with Debian's /usr/bin/python3 (it has the `regex` module):
  /usr/bin/python3 scripts/reference/clip_tokenize.py --fixtures test/fixtures/tokens
      reads strings.json there, writes expected.json (text, cleaned, ids) beside it
  echo '["a photo of a cat"]' | /usr/bin/python3 scripts/reference/clip_tokenize.py --stdin
      prints [{"cleaned": ..., "ids": [...]}] for a JSON array of strings on stdin
"""

import argparse
import gzip
import html
import html.entities
import json
import os
import sys
import unicodedata
from functools import lru_cache

import regex as re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BPE = os.path.join(ROOT, "assets", "clip", "bpe_simple_vocab_16e6.txt.gz")

# --------------------------------------------------------------------------------------------------
# ftfy stand-in (see the module docstring)


def _build_ftfy_html_entities():
    # As ftfy.chardata._build_html_entities: HTML5 names with semicolons, plus upper-cased variants of
    # all-lowercase names when the upper-cased form means nothing to html.unescape.
    entities = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            entities["&" + name] = char
            if name == name.lower():
                name_upper = name.upper()
                entity_upper = "&" + name_upper
                if html.unescape(entity_upper) == entity_upper:
                    entities[entity_upper] = char.upper()
    return entities


FTFY_HTML_ENTITIES = _build_ftfy_html_entities()
FTFY_HTML_ENTITY_RE = re.compile(r"&#?[0-9A-Za-z]{1,24};")


def _unescape_fixup(match):
    text = match.group(0)
    if text in FTFY_HTML_ENTITIES:
        return FTFY_HTML_ENTITIES[text]
    if text.startswith("&#"):
        unescaped = html.unescape(text)
        # html.unescape decoded only part of it: keep the original.
        return text if ";" in unescaped else unescaped
    return text


def ftfy_unescape_html(text):
    return FTFY_HTML_ENTITY_RE.sub(_unescape_fixup, text)


def _c1_fixer(match):
    byte = match.group(0).encode("latin-1")
    try:
        return byte.decode("cp1252")
    except UnicodeDecodeError:  # "sloppy" windows-1252: undefined bytes stay as they are
        return match.group(0)


def fix_c1_controls(text):
    return re.sub(r"[\x80-\x9f]", _c1_fixer, text)


LIGATURES = {
    ord("Ĳ"): "IJ", ord("ĳ"): "ij", ord("ŉ"): "ʼn", ord("Ǳ"): "DZ", ord("ǲ"): "Dz", ord("ǳ"): "dz",
    ord("Ǆ"): "DŽ", ord("ǅ"): "Dž", ord("ǆ"): "dž", ord("Ǉ"): "LJ", ord("ǈ"): "Lj", ord("ǉ"): "lj",
    ord("Ǌ"): "NJ", ord("ǋ"): "Nj", ord("ǌ"): "nj", ord("ﬀ"): "ff", ord("ﬁ"): "fi", ord("ﬂ"): "fl",
    ord("ﬃ"): "ffi", ord("ﬄ"): "ffl", ord("ﬅ"): "ſt", ord("ﬆ"): "st",
}


def fix_latin_ligatures(text):
    return text.translate(LIGATURES)


def _build_width_map():
    width_map = {0x3000: " "}
    for i in range(0xFF01, 0xFFF0):
        char = chr(i)
        alternate = unicodedata.normalize("NFKC", char)
        if alternate != char:
            width_map[i] = alternate
    return width_map


WIDTH_MAP = _build_width_map()


def fix_character_width(text):
    return text.translate(WIDTH_MAP)


def uncurl_quotes(text):
    return re.sub("[\u02bc\u2018-\u201b]", "'", re.sub("[\u201c-\u201f]", '"', text))


def fix_line_breaks(text):
    return (
        text.replace("\r\n", "\n")
        .replace("\r", "\n")
        .replace("\u2028", "\n")
        .replace("\u2029", "\n")
        .replace("\u0085", "\n")
    )


def fix_surrogates(text):
    # Paired surrogates cannot occur in a Python str read from UTF-8 or JSON; lone ones become U+FFFD.
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def remove_terminal_escapes(text):
    return re.sub("\033\\[((?:\\d|;)*)([a-zA-Z])", "", text)


CONTROL_CHARS = {
    i: None
    for r in (range(0x00, 0x09), [0x0B], range(0x0E, 0x20), [0x7F], range(0x206A, 0x2070), [0xFEFF],
              range(0xFFF9, 0xFFFD))
    for i in r
}


def remove_control_chars(text):
    return text.translate(CONTROL_CHARS)


def ftfy_subset(text):
    unescape = "<" not in text
    while True:
        orig = text
        if unescape:
            text = ftfy_unescape_html(text)
        text = fix_c1_controls(text)
        text = fix_latin_ligatures(text)
        text = fix_character_width(text)
        text = uncurl_quotes(text)
        text = fix_line_breaks(text)
        text = fix_surrogates(text)
        text = remove_terminal_escapes(text)
        text = remove_control_chars(text)
        text = unicodedata.normalize("NFC", text)
        if text == orig:
            return text


# --------------------------------------------------------------------------------------------------
# OpenAI CLIP simple_tokenizer.py


@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    cs = [chr(n) for n in cs]
    return dict(zip(bs, cs))


def get_pairs(word):
    pairs = set()
    prev_char = word[0]
    for char in word[1:]:
        pairs.add((prev_char, char))
        prev_char = char
    return pairs


def basic_clean(text):
    text = ftfy_subset(text)  # OpenAI: ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text):
    text = re.sub(r"\s+", " ", text)
    text = text.strip()
    return text


class SimpleTokenizer(object):
    def __init__(self, bpe_path=DEFAULT_BPE):
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")
        merges = merges[1 : 49152 - 256 - 2 + 1]
        merges = [tuple(merge.split()) for merge in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab]
        for merge in merges:
            vocab.append("".join(merge))
        vocab.extend(["<|startoftext|>", "<|endoftext|>"])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            re.IGNORECASE,
        )

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)

        if not pairs:
            return token + "</w>"

        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break

                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            new_word = tuple(new_word)
            word = new_word
            if len(word) == 1:
                break
            else:
                pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        bpe_tokens = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens


_tokenizer = None


def tokenizer():
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = SimpleTokenizer()
    return _tokenizer


def tokenize(texts, context_length=77, truncate=True):
    """clip.tokenize, returning unpadded lists (OpenAI pads each row with zeros to context_length)."""
    if isinstance(texts, str):
        texts = [texts]
    sot_token = tokenizer().encoder["<|startoftext|>"]
    eot_token = tokenizer().encoder["<|endoftext|>"]
    all_tokens = [[sot_token] + tokenizer().encode(text) + [eot_token] for text in texts]
    result = []
    for i, tokens in enumerate(all_tokens):
        if len(tokens) > context_length:
            if truncate:
                tokens = tokens[:context_length]
                tokens[-1] = eot_token
            else:
                raise RuntimeError(f"Input {texts[i]} is too long for context length {context_length}")
        result.append(tokens)
    return result


def describe(texts):
    ids = tokenize(texts)
    return [{"cleaned": whitespace_clean(basic_clean(t)), "ids": row} for t, row in zip(texts, ids)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fixtures", help="folder with strings.json; expected.json is written there")
    group.add_argument("--stdin", action="store_true", help="JSON array of strings on stdin, JSON on stdout")
    args = parser.parse_args()
    if args.stdin:
        texts = json.loads(sys.stdin.read())
        json.dump(describe(texts), sys.stdout, ensure_ascii=True)
        sys.stdout.write("\n")
        return
    with open(os.path.join(args.fixtures, "strings.json"), encoding="utf-8") as f:
        cases = json.load(f)
    rows = describe([c["text"] for c in cases])
    out = [{"name": c["name"], "cleaned": r["cleaned"], "ids": r["ids"]} for c, r in zip(cases, rows)]
    lines = ",\n".join("  " + json.dumps(o, ensure_ascii=True) for o in out)
    with open(os.path.join(args.fixtures, "expected.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + lines + "\n]\n")


if __name__ == "__main__":
    main()
