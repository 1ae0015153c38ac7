/**
 * A real CLIP tokenizer, in the Hugging Face layout, built from OpenAI's BPE vocabulary
 * (`assets/clip/bpe_simple_vocab_16e6.txt.gz`, MIT, see `assets/clip/LICENSE-openai-CLIP`).
 *
 * The vocabulary is built exactly as OpenAI's `SimpleTokenizer` builds it: the 256 byte-level
 * characters of `bytes_to_unicode()`, the same with `</w>`, the first 48 894 merges joined, then
 * `<|startoftext|>` (49406) and `<|endoftext|>` (49407): 49 408 entries. `tokenizer.json` has the
 * shape Hugging Face's `CLIPTokenizerFast` writes for `openai/clip-vit-base-patch32`.
 */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { GlimpseError } from '../../errors/index.js';

/** Number of merges CLIP uses: `49152 - 256 - 2`. */
export const CLIP_MERGE_COUNT = 48894;
/** Vocabulary size: 2 × 256 byte tokens + merges + 2 special tokens. */
export const CLIP_VOCAB_SIZE = 49408;
export const CLIP_BOS_TOKEN = '<|startoftext|>';
export const CLIP_EOS_TOKEN = '<|endoftext|>';
export const CLIP_BOS_ID = 49406;
export const CLIP_EOS_ID = 49407;
/** CLIP's pre-tokenizer pattern (OpenAI's, with `\p{L}`/`\p{N}` classes as Hugging Face writes it). */
export const CLIP_SPLIT_PATTERN =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * OpenAI's `bytes_to_unicode()`: byte value → printable character, in the table's insertion order
 * (printable bytes first, then the rest mapped from U+0100 upwards). The order is the vocabulary's.
 */
export function clipByteUnicodeTable(): Array<[number, string]> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n);
      n++;
    }
  }
  return bytes.map((b, i) => [b, String.fromCodePoint(chars[i] ?? 0)]);
}

/** The parsed vocabulary: merges in rank order and the token → id table. */
export interface ClipBpeVocabulary {
  readonly merges: ReadonlyArray<readonly [string, string]>;
  /** Token → id, in id order (JSON key order is id order). */
  readonly vocab: Readonly<Record<string, number>>;
}

/**
 * Parses OpenAI's gzipped merges file into merges and vocabulary, as `SimpleTokenizer.__init__` does.
 *
 * @example
 *   const { vocab } = await readClipBpeVocabulary('assets/clip/bpe_simple_vocab_16e6.txt.gz');
 *   vocab['<|endoftext|>']; // 49407
 */
export async function readClipBpeVocabulary(bpeGzPath: string): Promise<ClipBpeVocabulary> {
  let text: string;
  try {
    text = gunzipSync(await readFile(bpeGzPath)).toString('utf8');
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_FILE_MISSING',
      `Expected a gzipped CLIP BPE merges file at ${bpeGzPath} but it could not be read: ${
        err instanceof Error ? err.message : String(err)
      }`,
      { cause: err, details: { path: bpeGzPath } },
    );
  }
  const lines = text.split('\n');
  // merges[1 : 49152 - 256 - 2 + 1], as OpenAI slices it (line 0 is the version header).
  const mergeLines = lines.slice(1, CLIP_MERGE_COUNT + 1);
  if (mergeLines.length !== CLIP_MERGE_COUNT) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected at least ${CLIP_MERGE_COUNT} merges in ${bpeGzPath} but received ${mergeLines.length}`,
      { details: { path: bpeGzPath } },
    );
  }
  const merges: Array<readonly [string, string]> = [];
  for (const [i, line] of mergeLines.entries()) {
    const parts = line.split(/\s+/).filter((p) => p.length > 0);
    const [a, b] = parts;
    if (parts.length !== 2 || a === undefined || b === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_CONFIG_INVALID',
        `Expected two symbols on line ${i + 2} of ${bpeGzPath} but received ${JSON.stringify(line)}`,
        { details: { path: bpeGzPath } },
      );
    }
    merges.push([a, b]);
  }
  const tokens: string[] = [];
  const byteChars = clipByteUnicodeTable().map(([, c]) => c);
  tokens.push(...byteChars);
  tokens.push(...byteChars.map((c) => `${c}</w>`));
  for (const [a, b] of merges) tokens.push(a + b);
  tokens.push(CLIP_BOS_TOKEN, CLIP_EOS_TOKEN);
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => {
    vocab[t] = id;
  });
  if (Object.keys(vocab).length !== CLIP_VOCAB_SIZE) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected ${CLIP_VOCAB_SIZE} distinct tokens from ${bpeGzPath} but received ${Object.keys(vocab).length}`,
      { details: { path: bpeGzPath } },
    );
  }
  return { merges, vocab };
}

function specialToken(content: string): Record<string, unknown> {
  return { content, single_word: false, lstrip: false, rstrip: false, normalized: true };
}

/**
 * The `tokenizer.json` object Hugging Face's `CLIPTokenizerFast` writes for
 * `openai/clip-vit-base-patch32`, from a parsed vocabulary.
 *
 * @example
 *   const json = clipTokenizerJson(await readClipBpeVocabulary(path));
 *   json.post_processor; // { type: 'RobertaProcessing', sep: ['<|endoftext|>', 49407], ... }
 */
export function clipTokenizerJson(bpe: ClipBpeVocabulary): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: CLIP_BOS_ID, ...specialToken(CLIP_BOS_TOKEN), special: true },
      { id: CLIP_EOS_ID, ...specialToken(CLIP_EOS_TOKEN), special: true },
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFC' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [CLIP_EOS_TOKEN, CLIP_EOS_ID],
      cls: [CLIP_BOS_TOKEN, CLIP_BOS_ID],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: CLIP_EOS_TOKEN,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab: bpe.vocab,
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/**
 * Builds the tokenizer files of a CLIP model folder from OpenAI's BPE merges file: file name →
 * content for `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`, `vocab.json` and
 * `merges.txt` (with the `#version: 0.2` header Hugging Face writes). Contents are deterministic.
 *
 * @example
 *   const files = await buildClipTokenizerFiles('assets/clip/bpe_simple_vocab_16e6.txt.gz');
 *   for (const [name, content] of Object.entries(files)) await writeFileAtomic(join(dir, name), content);
 */
export async function buildClipTokenizerFiles(bpeGzPath: string): Promise<Record<string, string>> {
  const bpe = await readClipBpeVocabulary(bpeGzPath);
  const tokenizerConfig = {
    add_prefix_space: false,
    bos_token: { ...specialToken(CLIP_BOS_TOKEN), __type: 'AddedToken' },
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: { ...specialToken(CLIP_EOS_TOKEN), __type: 'AddedToken' },
    errors: 'replace',
    model_max_length: 77,
    pad_token: CLIP_EOS_TOKEN,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: { ...specialToken(CLIP_EOS_TOKEN), __type: 'AddedToken' },
  };
  const specialTokensMap = {
    bos_token: specialToken(CLIP_BOS_TOKEN),
    eos_token: specialToken(CLIP_EOS_TOKEN),
    pad_token: CLIP_EOS_TOKEN,
    unk_token: specialToken(CLIP_EOS_TOKEN),
  };
  const mergesTxt = ['#version: 0.2', ...bpe.merges.map(([a, b]) => `${a} ${b}`)].join('\n') + '\n';
  return {
    'tokenizer.json': JSON.stringify(clipTokenizerJson(bpe)) + '\n',
    'tokenizer_config.json': JSON.stringify(tokenizerConfig, null, 2) + '\n',
    'special_tokens_map.json': JSON.stringify(specialTokensMap, null, 2) + '\n',
    'vocab.json': JSON.stringify(bpe.vocab) + '\n',
    'merges.txt': mergesTxt,
  };
}
