/**
 * CLIP text tokenization, identical to OpenAI's reference (`clip.tokenize(texts, truncate=True)`).
 *
 * The text path is OpenAI's, step by step: `basic_clean` (ftfy, then `html.unescape` twice, strip),
 * `whitespace_clean`, `.lower()`, the split pattern of `SimpleTokenizer` (with Python's whitespace
 * class and IGNORECASE), byte-level BPE with `</w>`, then `<|startoftext|> … <|endoftext|>` truncated to
 * the context length keeping the end token. The BPE merges run in `@huggingface/tokenizers` (this module
 * is its only importer), built from the model folder's `tokenizer.json`; the split and cleanup are done
 * here because the tokenizer.json pipeline differs from OpenAI's (no ftfy or HTML unescaping, and
 * JavaScript's `\s` is not Python's: U+FEFF is whitespace only in JavaScript, U+0085 only in Python).
 *
 * `scripts/reference/clip_tokenize.py` is the reference this module is tested against
 * (`test/tokenize.test.ts`, fixtures in `test/fixtures/tokens/`).
 */
import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';
import { GlimpseError } from '../errors/index.js';
import { assertOneOf, describeValue, invalidParameterError, isPlainObject } from '../core/validate.js';
import { HTML5_ENTITIES, HTML5_LEGACY_ENTITIES } from './html-entities.js';

// ---------------------------------------------------------------------------------------------------
// Python's whitespace, and html.unescape

/** Python's `\s` for str patterns (the `regex` module's, as OpenAI's whitespace_clean uses). */
const PY_SPACE_CLASS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** Python's `str.isspace()` characters, which `str.strip()` removes: `\s` plus U+001C–U+001F. */
const PY_ISSPACE_CLASS = `${PY_SPACE_CLASS}\\x1c-\\x1f`;
const PY_SPACE_RUN = new RegExp(`[${PY_SPACE_CLASS}]+`, 'g');
const PY_STRIP = new RegExp(`^[${PY_ISSPACE_CLASS}]+|[${PY_ISSPACE_CLASS}]+$`, 'g');

/** Python's `str.strip()` with no argument. */
function pyStrip(text: string): string {
  return text.replace(PY_STRIP, '');
}

/** Windows-1252 for bytes 0x80–0x9F; the five undefined bytes map to themselves ("sloppy" decoding). */
const CP1252_HIGH =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

const HTML_ENTITIES = new Map(Object.entries(HTML5_ENTITIES));
const HTML_CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/** Python's `html._invalid_codepoints` (beside the C1 range, which `_invalid_charrefs` handles). */
function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe
  );
}

/** A named reference (`amp;`, `eacute`) as `_html5[name]` would find it, or undefined. */
function html5Lookup(name: string): string | undefined {
  if (name.endsWith(';')) return HTML_ENTITIES.get(name.slice(0, -1));
  return HTML5_LEGACY_ENTITIES.has(name) ? HTML_ENTITIES.get(name) : undefined;
}

function replaceCharref(s: string): string {
  if (s.startsWith('#')) {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = (hex ? s.slice(2) : s.slice(1)).replace(/;$/, '');
    const num = Number.parseInt(digits, hex ? 16 : 10);
    if (num === 0x0 || num === 0xd || (num >= 0x80 && num <= 0x9f)) {
      return num === 0 ? '\ufffd' : num === 0xd ? '\r' : (CP1252_HIGH[num - 0x80] ?? '');
    }
    if ((num >= 0xd800 && num <= 0xdfff) || !(num <= 0x10ffff)) return '\ufffd';
    if (isInvalidCodepoint(num)) return '';
    return String.fromCodePoint(num);
  }
  const whole = html5Lookup(s);
  if (whole !== undefined) return whole;
  // The longest matching legacy name, as the standard (and Python) does: `&ampx` → `&x`.
  const chars = Array.from(s);
  for (let x = chars.length - 1; x > 1; x--) {
    const prefix = chars.slice(0, x).join('');
    const found = html5Lookup(prefix);
    if (found !== undefined) return found + chars.slice(x).join('');
  }
  return `&${s}`;
}

/**
 * Python's `html.unescape`, faithfully: HTML5 named references (with `;`, and the legacy ones without,
 * longest prefix first), decimal and hex references, Windows-1252 for `&#128;`–`&#159;`, U+FFFD for
 * `&#0;`, surrogates and values past U+10FFFF, nothing for other invalid code points.
 *
 * @example
 *   htmlUnescape('&lt;b&gt; &amp &#39;x&#x27; &eacutex'); // "<b> & 'x' éx"
 */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(HTML_CHARREF, (_m, s: string) => replaceCharref(s));
}

// ---------------------------------------------------------------------------------------------------
// The ftfy subset

let ftfyEntities: Map<string, string> | undefined;

/** ftfy's HTML_ENTITIES: `&name;` for every HTML5 name, plus upper-cased all-lowercase names. */
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities !== undefined) return ftfyEntities;
  const table = new Map<string, string>();
  for (const [bare, char] of HTML_ENTITIES) {
    const name = `${bare};`;
    table.set(`&${name}`, char);
    if (name === name.toLowerCase()) {
      const upper = `&${name.toUpperCase()}`;
      if (htmlUnescape(upper) === upper) table.set(upper, char.toUpperCase());
    }
  }
  ftfyEntities = table;
  return table;
}

const FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(FTFY_ENTITY, (m) => {
    const known = ftfyEntityTable().get(m);
    if (known !== undefined) return known;
    if (m.startsWith('&#')) {
      const unescaped = htmlUnescape(m);
      return unescaped.includes(';') ? m : unescaped;
    }
    return m;
  });
}

const LIGATURES: Readonly<Record<string, string>> = {
  '\u0132': 'IJ',
  '\u0133': 'ij',
  '\u0149': '\u02bcn',
  '\u01f1': 'DZ',
  '\u01f2': 'Dz',
  '\u01f3': 'dz',
  '\u01c4': 'D\u017d',
  '\u01c5': 'D\u017e',
  '\u01c6': 'd\u017e',
  '\u01c7': 'LJ',
  '\u01c8': 'Lj',
  '\u01c9': 'lj',
  '\u01ca': 'NJ',
  '\u01cb': 'Nj',
  '\u01cc': 'nj',
  '\ufb00': 'ff',
  '\ufb01': 'fi',
  '\ufb02': 'fl',
  '\ufb03': 'ffi',
  '\ufb04': 'ffl',
  '\ufb05': '\u017ft',
  '\ufb06': 'st',
};
const LIGATURE_CHARS = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
/** U+3000 and the fullwidth/halfwidth forms block (U+FF01–U+FFEF), mapped by NFKC as ftfy does. */
const WIDTH_CHARS = /[\u3000\uff01-\uffef]/g;
const C1_CONTROLS = /[\x80-\x9f]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const TERMINAL_ESCAPE = /\x1b\[[\p{Nd};]*[a-zA-Z]/gu;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

/** One pass of the ftfy steps, in ftfy 6's order. */
function ftfyPass(input: string, unescape: boolean): string {
  let text = unescape ? ftfyUnescapeHtml(input) : input;
  text = text.replace(C1_CONTROLS, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80] ?? c);
  text = text.replace(LIGATURE_CHARS, (c) => LIGATURES[c] ?? c);
  text = text.replace(WIDTH_CHARS, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
  text = text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
  text = text.replace(/\r\n/g, '\n').replace(/[\r\u2028\u2029\x85]/g, '\n');
  text = text.replace(LONE_SURROGATE, '\ufffd');
  text = text.replace(TERMINAL_ESCAPE, '');
  text = text.replace(CONTROL_CHARS, '');
  return text.normalize('NFC');
}

/** Printable ASCII without `&`: every cleanup step but the whitespace ones is a no-op on it. */
const PLAIN_ASCII = /^[\x20-\x25\x27-\x7e]*$/;

/**
 * OpenAI CLIP's `whitespace_clean(basic_clean(text))`: `ftfy.fix_text`, then Python's `html.unescape`
 * twice, strip, and every run of whitespace collapsed to one space. Case is kept (the tokenizer
 * lower-cases after this).
 *
 * ftfy is replaced by the steps of ftfy 6's `fix_text` defaults that change ordinary text, applied in
 * its order and repeated until nothing changes, as ftfy does:
 * - `unescape_html` ("auto": only when the text contains no `<`): `&name;` HTML5 references (and
 *   upper-cased ones such as `&EACUTE;`) and numeric `&#…;` ones, semicolon required;
 * - `fix_c1_controls`: U+0080–U+009F read as Windows-1252 (`\x85` → `…`);
 * - `fix_latin_ligatures` (`ﬁ` → `fi`, `Ĳ` → `IJ`, …); `fix_character_width` (fullwidth ASCII and
 *   halfwidth katakana → NFKC, U+3000 → space); `uncurl_quotes` (U+02BC, U+2018–U+201B → `'`;
 *   U+201C–U+201F → `"`); `fix_line_breaks` (CRLF, CR, U+2028, U+2029, U+0085 → LF);
 *   `fix_surrogates` (lone surrogates → U+FFFD); `remove_terminal_escapes` (ANSI `ESC [ … letter`);
 *   `remove_control_chars` (U+0000–U+0008, U+000B, U+000E–U+001F, U+007F, U+206A–U+206F, U+FEFF,
 *   U+FFF9–U+FFFC); NFC.
 *
 * Not done: ftfy's `fix_encoding` (mojibake repair such as `Ã©` → `é`, with `restore_byte_a0`,
 * `replace_lossy_sequences`, `decode_inconsistent_utf8`); text that ftfy would repair that way is
 * tokenized as written. Unicode tables are Node's (ICU), which can differ from Python's for characters
 * assigned after Unicode 14.
 *
 * @example
 *   cleanClipText('  “Caf\u0065\u0301”  &amp;amp;\tﬁsh  '); // '"Café" & fish'
 */
export function cleanClipText(text: string): string {
  if (PLAIN_ASCII.test(text)) return pyStrip(pyStrip(text).replace(PY_SPACE_RUN, ' '));
  const unescape = !text.includes('<');
  let fixed = text;
  for (;;) {
    const next = ftfyPass(fixed, unescape);
    if (next === fixed) break;
    fixed = next;
  }
  const basic = pyStrip(htmlUnescape(htmlUnescape(fixed)));
  return pyStrip(basic.replace(PY_SPACE_RUN, ' '));
}

// ---------------------------------------------------------------------------------------------------
// The tokenizer

const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';
/**
 * OpenAI's pattern, run on lower-cased text with the `regex` module's IGNORECASE, reproduced without
 * JavaScript's `i` flag (which would also fold U+0345 into `\p{L}`): Python's `\s`; `'s` and
 * `startoftext` also match the long s `ſ` (U+017F), which simple case folding equates with `s`; and
 * U+0345 COMBINING GREEK YPOGEGRAMMENI matches no alternative (its case folding is a letter, so
 * IGNORECASE drops it from the negated class), so it is skipped like whitespace, as in Python.
 */
const CLIP_WORD = new RegExp(
  `<\\|[s\u017f]tartoftext\\|>|<\\|endoftext\\|>|'[s\u017f]|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|` +
    `[^${PY_SPACE_CLASS}\\p{L}\\p{N}\u0345]+`,
  'gu',
);
const DEFAULT_CONTEXT_LENGTH = 77;
/** Entries in the per-word cache before it is cleared (bounds memory on endless streams of text). */
const WORD_CACHE_LIMIT = 100_000;

/** OpenAI's `bytes_to_unicode()` as a 256-entry table indexed by byte value. */
function byteToUnicodeTable(): string[] {
  const table = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
}
const BYTE_TO_UNICODE = byteToUnicodeTable();
const utf8 = new TextEncoder();

export interface ClipTokenizerOptions {
  /** Tokens per text, start and end tokens included (CLIP: 77). Longer texts are truncated. */
  contextLength?: number;
}

export interface EncodeBatchOptions {
  /**
   * `'longest'` (default): pad to the longest text of the batch. Exact for CLIP, whose text tower is
   * causal and pools at the end token, so padding after it changes nothing; and much faster.
   * `'max'`: pad every row to the context length, as `clip.tokenize` does.
   */
  padTo?: 'longest' | 'max';
}

/** Token ids of a batch, row-major `[batch, length]`, as the ONNX text model takes them. */
export interface EncodedBatch {
  readonly inputIds: BigInt64Array;
  /** 1 on real tokens (start, text, end), 0 on padding. */
  readonly attentionMask: BigInt64Array;
  readonly batch: number;
  readonly length: number;
}

export interface ClipTokenizer {
  readonly contextLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /** Padding id: the end token, as Hugging Face's CLIP tokenizer pads (OpenAI pads with 0). */
  readonly padTokenId: number;
  /**
   * Per text: cleanup, encode, `[bos, …ids, eos]`, truncated to the context length keeping the end
   * token (OpenAI's `clip.tokenize(truncate=True)`, without its zero padding).
   */
  tokenize(texts: readonly string[]): number[][];
  /** Tokenizes and pads into one `[batch, length]` block of int64 ids and attention mask. */
  encodeBatch(texts: readonly string[], options?: EncodeBatchOptions): EncodedBatch;
  /** Token ids back to text, special tokens skipped (lower-cased, cleaned; for display and debugging). */
  decode(ids: readonly number[]): string;
}

function configError(message: string, cause?: unknown): GlimpseError {
  return new GlimpseError('GLIMPSE_E_MODEL_CONFIG_INVALID', message, cause === undefined ? {} : { cause });
}

function specialId(vocab: Record<string, unknown>, token: string): number {
  const id = vocab[token];
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
    throw configError(
      `Expected tokenizer.json model.vocab to have an integer id for ${token} but received ${describeValue(id)}`,
    );
  }
  return id;
}

/** Validates the parts of tokenizer.json this module relies on; returns the special ids. */
function validateTokenizerJson(json: unknown): { json: Record<string, unknown>; bos: number; eos: number } {
  if (!isPlainObject(json)) {
    throw configError(`Expected tokenizer.json to be a JSON object but received ${describeValue(json)}`);
  }
  const model = json.model;
  if (!isPlainObject(model)) {
    throw configError(`Expected tokenizer.json to have a model object but received ${describeValue(model)}`);
  }
  if (model.type !== undefined && model.type !== 'BPE') {
    throw configError(`Expected tokenizer.json model.type "BPE" but received ${describeValue(model.type)}`);
  }
  if (!isPlainObject(model.vocab)) {
    throw configError(
      `Expected tokenizer.json model.vocab to be an object but received ${describeValue(model.vocab)}`,
    );
  }
  if (!Array.isArray(model.merges) || model.merges.length === 0) {
    throw configError(
      `Expected tokenizer.json model.merges to be a non-empty array but received ${describeValue(model.merges)}`,
    );
  }
  if (model.end_of_word_suffix !== '</w>') {
    throw configError(
      `Expected tokenizer.json model.end_of_word_suffix "</w>" (a CLIP BPE) but received ${describeValue(model.end_of_word_suffix)}`,
    );
  }
  const vocab = model.vocab;
  for (const char of BYTE_TO_UNICODE) {
    if (typeof vocab[char] !== 'number' || typeof vocab[`${char}</w>`] !== 'number') {
      throw configError(
        `Expected tokenizer.json model.vocab to hold every byte-level symbol but ${JSON.stringify(char)} is missing`,
      );
    }
  }
  return { json, bos: specialId(vocab, BOS_TOKEN), eos: specialId(vocab, EOS_TOKEN) };
}

function checkTexts(texts: unknown): asserts texts is readonly string[] {
  if (!Array.isArray(texts)) {
    throw invalidParameterError('texts', 'an array of strings', texts, 'GLIMPSE_E_TEXT_INVALID');
  }
  for (let i = 0; i < texts.length; i++) {
    if (typeof texts[i] !== 'string') {
      throw invalidParameterError(`texts[${i}]`, 'a string', texts[i], 'GLIMPSE_E_TEXT_INVALID');
    }
  }
}

/**
 * Builds a CLIP tokenizer from a parsed `tokenizer.json` (a CLIP byte-level BPE with `</w>` word ends
 * and `<|startoftext|>` / `<|endoftext|>` in its vocabulary). Throws GLIMPSE_E_MODEL_CONFIG_INVALID for
 * anything else.
 *
 * @example
 *   const tok = createClipTokenizer(JSON.parse(await readFile('model/tokenizer.json', 'utf8')));
 *   tok.tokenize(['a photo of a cat']); // [[49406, 320, 1125, 539, 320, 2368, 49407]]
 */
export function createClipTokenizer(
  tokenizerJson: unknown,
  options: ClipTokenizerOptions = {},
): ClipTokenizer {
  if (!isPlainObject(options)) throw invalidParameterError('options', 'an object', options);
  const contextLength = options.contextLength ?? DEFAULT_CONTEXT_LENGTH;
  if (typeof contextLength !== 'number' || !Number.isInteger(contextLength) || contextLength < 2) {
    throw invalidParameterError('options.contextLength', 'an integer of at least 2', contextLength);
  }
  const { json, bos, eos } = validateTokenizerJson(tokenizerJson);
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, {});
  } catch (err) {
    throw configError(
      `Expected a tokenizer.json that @huggingface/tokenizers can load but it failed: ${
        err instanceof Error ? err.message : String(err)
      }`,
      err,
    );
  }
  const model = tokenizer.model;
  if (model === null) throw configError('Expected tokenizer.json to define a model but it has none');
  const tokenIds = model.tokens_to_ids;

  const wordCache = new Map<string, readonly number[]>();
  const encodeWord = (word: string): readonly number[] => {
    const cached = wordCache.get(word);
    if (cached !== undefined) return cached;
    let ids: number[];
    if (word === BOS_TOKEN) ids = [bos];
    else if (word === EOS_TOKEN) ids = [eos];
    else {
      let symbols = '';
      for (const byte of utf8.encode(word)) symbols += BYTE_TO_UNICODE[byte];
      ids = model.encode([symbols]).map((token: string) => {
        const id = tokenIds.get(token);
        if (id === undefined) throw configError(`Expected token ${JSON.stringify(token)} in the vocabulary`);
        return id;
      });
    }
    if (wordCache.size >= WORD_CACHE_LIMIT) wordCache.clear();
    wordCache.set(word, ids);
    return ids;
  };

  const tokenizeOne = (text: string): number[] => {
    const out = [bos];
    const lowered = cleanClipText(text).toLowerCase();
    for (const match of lowered.matchAll(CLIP_WORD)) {
      for (const id of encodeWord(match[0])) out.push(id);
      if (out.length >= contextLength) break;
    }
    out.push(eos);
    if (out.length > contextLength) {
      out.length = contextLength;
      out[contextLength - 1] = eos;
    }
    return out;
  };

  const tokenize = (texts: readonly string[]): number[][] => {
    checkTexts(texts);
    return texts.map(tokenizeOne);
  };

  return Object.freeze({
    contextLength,
    bosTokenId: bos,
    eosTokenId: eos,
    padTokenId: eos,
    tokenize,
    encodeBatch(texts: readonly string[], batchOptions: EncodeBatchOptions = {}): EncodedBatch {
      const padTo = batchOptions.padTo ?? 'longest';
      assertOneOf('options.padTo', padTo, ['longest', 'max']);
      const rows = tokenize(texts);
      const length = padTo === 'max' ? contextLength : rows.reduce((m, r) => Math.max(m, r.length), 0);
      const inputIds = new BigInt64Array(rows.length * length).fill(BigInt(eos));
      const attentionMask = new BigInt64Array(rows.length * length);
      rows.forEach((row, i) => {
        const base = i * length;
        for (let j = 0; j < row.length; j++) {
          inputIds[base + j] = BigInt(row[j] ?? eos);
          attentionMask[base + j] = 1n;
        }
      });
      return { inputIds, attentionMask, batch: rows.length, length };
    },
    decode(ids: readonly number[]): string {
      return tokenizer
        .decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false })
        .trim();
    },
  });
}

/**
 * Reads a model folder's `tokenizer.json` and builds the CLIP tokenizer (see createClipTokenizer).
 *
 * @example
 *   const tok = await loadClipTokenizer(folder.tokenizerPath);
 *   const { inputIds, attentionMask, batch, length } = tok.encodeBatch(['a dog', 'a cat on a mat']);
 */
export async function loadClipTokenizer(
  path: string,
  options: ClipTokenizerOptions = {},
): Promise<ClipTokenizer> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new GlimpseError('GLIMPSE_E_MODEL_FILE_MISSING', `Expected file ${path} but it could not be read`, {
      cause: err,
      details: { path },
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected ${path} to be valid JSON but it is not: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err, details: { path } },
    );
  }
  return createClipTokenizer(json, options);
}
