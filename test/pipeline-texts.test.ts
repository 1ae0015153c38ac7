import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel, type ClipModel } from '../src/pipeline/model.js';
import { embedTextsBucketed } from '../src/pipeline/texts.js';

let model: ClipModel;

before(async () => {
  model = await loadModel(await ensureSynthModel('tiny', 0));
});

after(async () => {
  await model?.close();
});

test('length-bucketed text batches give the same rows, in input order, as each text alone', async () => {
  const texts = [
    'a very long caption about a dog running across a sunny beach at sunset with a red ball in its mouth',
    'cat',
    '',
    'two words',
    'a medium length caption about mountains',
    'x'.repeat(400),
    'cat',
    'a photo',
    'the quick brown fox jumps over the lazy dog',
  ];
  const tokenizer = await model.tokenizer();
  const session = await model.textSession();
  const bucketed = await embedTextsBucketed(tokenizer, session, texts, 3);
  const d = bucketed.dimension;
  assert.equal(bucketed.data.length, texts.length * d);
  for (const [i, t] of texts.entries()) {
    const enc = tokenizer.encodeBatch([t]);
    const alone = await session.embed(enc.inputIds, enc.attentionMask, 1, enc.length);
    const row = bucketed.data.subarray(i * d, (i + 1) * d);
    let dot = 0;
    for (let k = 0; k < d; k++) dot += row[k]! * alone.data[k]!;
    assert.ok(dot > 0.99999, `text ${i} (${JSON.stringify(t.slice(0, 20))}) cosine ${dot}`);
  }
  // The same text twice gives the same row wherever it lands.
  const a = bucketed.data.subarray(1 * d, 2 * d);
  const b = bucketed.data.subarray(6 * d, 7 * d);
  for (let k = 0; k < d; k++) assert.ok(Math.abs(a[k]! - b[k]!) < 1e-5, `dimension ${k} differs`);
  // embedTexts (the public API) agrees.
  const viaModel = await model.embedTexts(texts);
  for (let k = 0; k < viaModel.data.length; k++) {
    assert.ok(Math.abs(viaModel.data[k]! - bucketed.data[k]!) < 1e-5, `element ${k} differs`);
  }
});
