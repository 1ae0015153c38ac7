import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildClipTokenizerFiles } from '../src/models/synth/tokenizer-json.js';
import {
  cleanClipText,
  createClipTokenizer,
  htmlUnescape,
  loadClipTokenizer,
  type ClipTokenizer,
} from '../src/decode/tokenize.js';
import { GlimpseError } from '../src/errors/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BPE = join(root, 'assets/clip/bpe_simple_vocab_16e6.txt.gz');
const REFERENCE = join(root, 'scripts/reference/clip_tokenize.py');
const PYTHON = '/usr/bin/python3';
const BOS = 49406;
const EOS = 49407;

interface Case {
  name: string;
  text: string;
}
interface Expected {
  name: string;
  cleaned: string;
  ids: number[];
}
const cases: Case[] = JSON.parse(readFileSync(join(root, 'test/fixtures/tokens/strings.json'), 'utf8'));
const expected: Expected[] = JSON.parse(
  readFileSync(join(root, 'test/fixtures/tokens/expected.json'), 'utf8'),
);
const expectedByName = new Map(expected.map((e) => [e.name, e]));

const files = await buildClipTokenizerFiles(BPE);
const tokenizerJson: Record<string, unknown> = JSON.parse(files['tokenizer.json']!);
const tok: ClipTokenizer = createClipTokenizer(tokenizerJson);

/** A fresh deep copy of tokenizer.json, to break one field at a time. */
function brokenJson(
  edit: (json: Record<string, unknown> & { model: Record<string, unknown> }) => void,
): unknown {
  const json = structuredClone(tokenizerJson) as Record<string, unknown> & { model: Record<string, unknown> };
  edit(json);
  return json;
}

function throwsGlimpse(fn: () => unknown, code: string, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GlimpseError, `expected a GlimpseError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.message, message);
    return true;
  });
}

test('fixtures: at least 60 strings, each with reference ids, names unique', () => {
  assert.ok(cases.length >= 60, `only ${cases.length} strings`);
  assert.equal(expected.length, cases.length);
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
  cases.forEach((c, i) => assert.equal(expected[i]!.name, c.name));
});

test('tokenize: ids identical to the OpenAI reference for every fixture string', () => {
  const got = tok.tokenize(cases.map((c) => c.text));
  const mismatches = cases
    .map((c, i) => ({ name: c.name, got: got[i], want: expected[i]!.ids }))
    .filter((m) => JSON.stringify(m.got) !== JSON.stringify(m.want));
  assert.deepEqual(mismatches, []);
});

test('cleanClipText: identical to the reference basic_clean + whitespace_clean for every fixture string', () => {
  const mismatches = cases
    .map((c, i) => ({ name: c.name, got: cleanClipText(c.text), want: expected[i]!.cleaned }))
    .filter((m) => m.got !== m.want);
  assert.deepEqual(mismatches, []);
});

test('tokenize: fixtures pin truncation, empty text, special tokens and unicode handling', () => {
  const ids = (name: string): number[] => expectedByName.get(name)!.ids;
  for (const name of [
    'long-caption-truncated',
    'long-digits-truncated',
    'long-exactly-77',
    'long-emoji-truncated',
  ]) {
    assert.equal(ids(name).length, 77, name);
    assert.equal(ids(name)[0], BOS, name);
    assert.equal(ids(name)[76], EOS, name);
    assert.equal(ids(name).filter((id) => id === EOS).length, 1, name);
  }
  // 75 words + start + end fit exactly; 76 words are cut to 75 and the end token kept.
  assert.deepEqual(ids('long-exactly-76'), [BOS, ...Array<number>(75).fill(2368), EOS]);
  assert.deepEqual(ids('long-exactly-77'), ids('long-exactly-76'));
  assert.deepEqual(ids('empty'), [BOS, EOS]);
  assert.deepEqual(ids('whitespace-only'), [BOS, EOS]);
  assert.deepEqual(tok.tokenize(['']), [[BOS, EOS]]);
  // Digits are one token each; the literal special tokens become their ids.
  assert.deepEqual(tok.tokenize(['1234']), [[BOS, 272, 273, 274, 275, EOS]]);
  assert.deepEqual(tok.tokenize(['a<|endoftext|>b']), [[BOS, 320, EOS, 321, EOS]]);
  // NFC and NFD spellings tokenize the same; uppercase contractions like lowercase ones.
  assert.deepEqual(ids('combining-nfd'), ids('combining-nfc'));
  assert.deepEqual(ids('contractions-upper').slice(0, 15), ids('contractions').slice(0, 15));
  assert.deepEqual(ids('html-amp-double'), tok.tokenize(['Fish & Chips'])[0]);
});

test('tokenize: the context length option truncates keeping the end token', () => {
  const short = createClipTokenizer(tokenizerJson, { contextLength: 5 });
  assert.equal(short.contextLength, 5);
  assert.deepEqual(short.tokenize(['a photo of a cat', 'a cat', '']), [
    [BOS, 320, 1125, 539, EOS],
    [BOS, 320, 2368, EOS],
    [BOS, EOS],
  ]);
  assert.deepEqual(createClipTokenizer(tokenizerJson, { contextLength: 2 }).tokenize(['a cat']), [
    [BOS, EOS],
  ]);
});

test('encodeBatch: pads to the longest text with the end token, row-major, mask on real tokens', () => {
  const out = tok.encodeBatch(['a photo of a cat', '', 'a dog']);
  assert.equal(out.batch, 3);
  assert.equal(out.length, 7);
  assert.ok(out.inputIds instanceof BigInt64Array && out.attentionMask instanceof BigInt64Array);
  assert.deepEqual([...out.inputIds].map(Number), [
    ...[BOS, 320, 1125, 539, 320, 2368, EOS],
    ...[BOS, EOS, EOS, EOS, EOS, EOS, EOS],
    ...[BOS, 320, 1929, EOS, EOS, EOS, EOS],
  ]);
  assert.deepEqual([...out.attentionMask].map(Number), [
    ...[1, 1, 1, 1, 1, 1, 1],
    ...[1, 1, 0, 0, 0, 0, 0],
    ...[1, 1, 1, 1, 0, 0, 0],
  ]);
  assert.equal(tok.padTokenId, EOS);
});

test('encodeBatch: padTo max pads every row to the context length; an empty batch is empty', () => {
  const out = tok.encodeBatch(['a dog', 'x'.repeat(500)], { padTo: 'max' });
  assert.equal(out.batch, 2);
  assert.equal(out.length, 77);
  assert.equal(out.inputIds.length, 154);
  assert.deepEqual([...out.inputIds.slice(0, 6)].map(Number), [BOS, 320, 1929, EOS, EOS, EOS]);
  assert.equal(
    [...out.attentionMask.slice(0, 77)].reduce((a, b) => a + Number(b), 0),
    4,
  );
  assert.equal(
    [...out.attentionMask.slice(77)].reduce((a, b) => a + Number(b), 0),
    77,
  );
  assert.equal(out.inputIds[153], BigInt(EOS));
  const longest = tok.encodeBatch(['a dog', 'x'.repeat(500)]);
  assert.equal(longest.length, 77);
  assert.deepEqual([...longest.inputIds], [...out.inputIds]);
  const empty = tok.encodeBatch([]);
  assert.deepEqual([empty.batch, empty.length, empty.inputIds.length], [0, 0, 0]);
  assert.deepEqual([tok.encodeBatch([], { padTo: 'max' }).length], [77]);
});

test('errors: bad texts and options name the argument and what was received', () => {
  throwsGlimpse(
    () => tok.tokenize(['a', 'b', 'c', 42 as unknown as string]),
    'GLIMPSE_E_TEXT_INVALID',
    'Expected a string for texts[3] but received 42 of type number',
  );
  throwsGlimpse(
    () => tok.encodeBatch([null as unknown as string]),
    'GLIMPSE_E_TEXT_INVALID',
    'Expected a string for texts[0] but received null of type null',
  );
  throwsGlimpse(
    () => tok.tokenize('a cat' as unknown as string[]),
    'GLIMPSE_E_TEXT_INVALID',
    'Expected an array of strings for texts but received "a cat" of type string',
  );
  throwsGlimpse(
    () => tok.encodeBatch(['a'], { padTo: 'all' as 'max' }),
    'GLIMPSE_E_ARG_INVALID',
    'Expected one of "longest", "max" for options.padTo but received "all" of type string',
  );
  throwsGlimpse(
    () => createClipTokenizer(tokenizerJson, { contextLength: 1 }),
    'GLIMPSE_E_ARG_INVALID',
    'Expected an integer of at least 2 for options.contextLength but received 1 of type number',
  );
});

test('errors: a tokenizer.json that is not a CLIP BPE is GLIMPSE_E_MODEL_CONFIG_INVALID', () => {
  const code = 'GLIMPSE_E_MODEL_CONFIG_INVALID';
  throwsGlimpse(
    () => createClipTokenizer(null),
    code,
    'Expected tokenizer.json to be a JSON object but received null of type null',
  );
  throwsGlimpse(
    () => createClipTokenizer({ version: '1.0' }),
    code,
    'Expected tokenizer.json to have a model object but received undefined of type undefined',
  );
  throwsGlimpse(
    () => createClipTokenizer(brokenJson((j) => (j.model.type = 'WordPiece'))),
    code,
    'Expected tokenizer.json model.type "BPE" but received "WordPiece" of type string',
  );
  throwsGlimpse(
    () => createClipTokenizer(brokenJson((j) => (j.model.merges = []))),
    code,
    'Expected tokenizer.json model.merges to be a non-empty array but received an array of length 0 of type array',
  );
  throwsGlimpse(
    () => createClipTokenizer(brokenJson((j) => (j.model.end_of_word_suffix = ''))),
    code,
    'Expected tokenizer.json model.end_of_word_suffix "</w>" (a CLIP BPE) but received "" of type string',
  );
  throwsGlimpse(
    () =>
      createClipTokenizer(
        brokenJson((j) => delete (j.model.vocab as Record<string, number>)['<|endoftext|>']),
      ),
    code,
    'Expected tokenizer.json model.vocab to have an integer id for <|endoftext|> but received undefined of type undefined',
  );
  throwsGlimpse(
    () => createClipTokenizer(brokenJson((j) => delete (j.model.vocab as Record<string, number>)['a</w>'])),
    code,
    'Expected tokenizer.json model.vocab to hold every byte-level symbol but "a" is missing',
  );
});

test('loadClipTokenizer: reads a file; missing file and bad JSON are coded errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'glimpse-tok-'));
  try {
    await writeFile(join(dir, 'tokenizer.json'), files['tokenizer.json']!);
    const loaded = await loadClipTokenizer(join(dir, 'tokenizer.json'), { contextLength: 10 });
    assert.equal(loaded.contextLength, 10);
    assert.deepEqual(loaded.tokenize(['a photo of a cat']), [[BOS, 320, 1125, 539, 320, 2368, EOS]]);
    await assert.rejects(loadClipTokenizer(join(dir, 'nope.json')), {
      code: 'GLIMPSE_E_MODEL_FILE_MISSING',
      message: `Expected file ${join(dir, 'nope.json')} but it could not be read`,
    });
    await writeFile(join(dir, 'bad.json'), '{"model": ');
    await assert.rejects(loadClipTokenizer(join(dir, 'bad.json')), (err: unknown) => {
      assert.ok(err instanceof GlimpseError);
      assert.equal(err.code, 'GLIMPSE_E_MODEL_CONFIG_INVALID');
      assert.match(err.message, /^Expected .*bad\.json to be valid JSON but it is not: /);
      return true;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('cleanClipText and htmlUnescape: examples of each step', () => {
  assert.equal(cleanClipText('  \u201cCafe\u0301\u201d  &amp;amp;\t\ufb01sh  '), '"Caf\u00e9" & fish');
  assert.equal(cleanClipText('\uff21\uff22\u3000\uff76\uff9e'), 'AB \u30ac');
  assert.equal(cleanClipText('a\r\nb\x1b[31mc\x00\ufeffd'), 'a bcd');
  assert.equal(cleanClipText('\x93hi\x94'), '"hi"');
  // ftfy unescapes to a fixed point unless the text has a "<"; html.unescape then runs twice more.
  assert.equal(cleanClipText('&amp;amp;amp;amp;'), '&');
  assert.equal(cleanClipText('< &amp;amp;amp;'), '< &amp;');
  assert.equal(htmlUnescape('&lt;b&gt; &amp &#39;x&#x27; &eacutex'), "<b> & 'x' \u00e9x");
  assert.equal(
    htmlUnescape('&#0;&#x80;&#xd800;&#1114112;&#xb;&nosuch;&constructor;'),
    '\ufffd\u20ac\ufffd\ufffd&nosuch;&constructor;',
  );
});

test('reference: the Python script itself runs and agrees with us on a few strings', (t) => {
  if (!existsSync(PYTHON)) {
    t.skip(`${PYTHON} is not installed`);
    return;
  }
  const texts = [
    'a photo of a cat',
    "It's  A  DOG's life 1234!",
    'Fish &amp;amp; \ufb01sh \u201cq\u201d',
    '',
    'x '.repeat(90),
  ];
  const run = spawnSync(PYTHON, [REFERENCE, '--stdin'], { input: JSON.stringify(texts), encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const reference: Array<{ cleaned: string; ids: number[] }> = JSON.parse(run.stdout);
  assert.equal(reference.length, texts.length);
  // Known ids of OpenAI's tokenizer for the first caption: the reference is not just agreeing with us.
  assert.deepEqual(reference[0]!.ids, [BOS, 320, 1125, 539, 320, 2368, EOS]);
  assert.equal(reference[4]!.ids.length, 77);
  assert.deepEqual(
    tok.tokenize(texts),
    reference.map((r) => r.ids),
  );
  assert.deepEqual(
    texts.map(cleanClipText),
    reference.map((r) => r.cleaned),
  );
});

test('buildClipTokenizerFiles: 49408 vocab entries, 48894 merges, the HF files and fields', () => {
  assert.deepEqual(Object.keys(files).sort(), [
    'merges.txt',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'vocab.json',
  ]);
  const model = tokenizerJson.model as { vocab: Record<string, number>; merges: string[]; type: string };
  assert.equal(model.type, 'BPE');
  assert.equal(Object.keys(model.vocab).length, 49408);
  assert.equal(model.merges.length, 48894);
  assert.equal(model.vocab['<|startoftext|>'], BOS);
  assert.equal(model.vocab['<|endoftext|>'], EOS);
  assert.equal(model.vocab['!'], 0);
  assert.equal(model.vocab['!</w>'], 256);
  assert.equal(model.merges[0], 'i n');
  assert.equal(model.vocab['in'], 512);
  assert.deepEqual(JSON.parse(files['vocab.json']!), model.vocab);
  const mergeLines = files['merges.txt']!.split('\n');
  assert.equal(mergeLines[0], '#version: 0.2');
  assert.equal(mergeLines.length, 48894 + 2); // header, merges, final newline
  assert.deepEqual(mergeLines.slice(1, -1), model.merges);
  assert.deepEqual(tokenizerJson.post_processor, {
    type: 'RobertaProcessing',
    sep: ['<|endoftext|>', EOS],
    cls: ['<|startoftext|>', BOS],
    trim_offsets: false,
    add_prefix_space: false,
  });
  assert.deepEqual(
    (tokenizerJson.added_tokens as Array<{ id: number; special: boolean }>).map((a) => [a.id, a.special]),
    [
      [BOS, true],
      [EOS, true],
    ],
  );
  const config = JSON.parse(files['tokenizer_config.json']!);
  assert.equal(config.tokenizer_class, 'CLIPTokenizer');
  assert.equal(config.model_max_length, 77);
  assert.equal(config.pad_token, '<|endoftext|>');
  assert.equal(config.do_lower_case, true);
  assert.equal(config.errors, 'replace');
  assert.equal(config.bos_token.content, '<|startoftext|>');
  assert.equal(JSON.parse(files['special_tokens_map.json']!).eos_token.content, '<|endoftext|>');
});

test('buildClipTokenizerFiles: the tokenizer round-trips ASCII text through decode', () => {
  for (const text of ['a photo of a cat', 'Two DOGS playing fetch in the park', 'supercalifragilistic 42']) {
    assert.equal(
      tok.decode(tok.tokenize([text])[0]!),
      cleanClipText(text).toLowerCase().replace(/(\d)/g, ' $1 ').replace(/\s+/g, ' ').trim(),
    );
  }
  for (const c of cases.filter((x) => /^[\x20-\x7e]*$/.test(x.text))) {
    const ids = tok.tokenize([c.text])[0]!;
    if (ids.length === 77) continue;
    const squash = (s: string): string => s.replace(/\s+/g, '');
    assert.equal(
      squash(tok.decode(ids)),
      squash(
        cleanClipText(c.text)
          .toLowerCase()
          .replace(/<\|(start|end)oftext\|>/g, ''),
      ),
      c.name,
    );
  }
});

test('transformers.js loads the generated folder as a CLIPTokenizer and agrees with us', async () => {
  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  const dir = await mkdtemp(join(tmpdir(), 'glimpse-tok-hf-'));
  const allowRemote = env.allowRemoteModels;
  try {
    await writeFile(join(dir, 'tokenizer.json'), files['tokenizer.json']!);
    await writeFile(join(dir, 'tokenizer_config.json'), files['tokenizer_config.json']!);
    env.allowRemoteModels = false;
    const hf = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
    assert.equal(hf.constructor.name, 'CLIPTokenizer');
    const plain = cases
      .filter((c) => /^[\x20-\x7e]*$/.test(c.text) && !c.text.includes('&') && c.text.trim() === c.text)
      .map((c) => c.text);
    let compared = 0;
    for (const text of plain) {
      const ours = tok.tokenize([text])[0]!;
      // transformers.js truncates after adding the special tokens, so it drops the end token that
      // OpenAI (and we) keep: compare only texts that fit.
      if (ours.length >= 77) continue;
      assert.deepEqual(hf.encode(text), ours, text);
      compared++;
    }
    assert.ok(compared >= 20, `only ${compared} plain strings compared`);
    const batch = ['a photo of a cat', 'a dog', "It's a DOG's life"];
    const encoded = hf(batch, { padding: true });
    const ours = tok.encodeBatch(batch);
    assert.deepEqual((encoded.input_ids.tolist() as bigint[][]).flat(), [...ours.inputIds]);
    assert.deepEqual((encoded.attention_mask.tolist() as bigint[][]).flat(), [...ours.attentionMask]);
  } finally {
    env.allowRemoteModels = allowRemote;
    await rm(dir, { recursive: true, force: true });
  }
});
