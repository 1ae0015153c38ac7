/**
 * The CLIP vision and text towers as ONNX graphs of standard operators (default domain, opset 17),
 * with the weight names and maths of Hugging Face's CLIPModel. One builder serves all precisions; the
 * `Weights` policy decides how each parameter and each weight MatMul is stored:
 *
 * - fp32: float32 initializers.
 * - fp16: float16 initializers, each followed by a Cast to float32; all arithmetic stays float32.
 *   onnxruntime's CPU provider has no float16 kernels for several operators used here (LayerNormalization,
 *   Softmax, Gelu-like chains run as float32 only), and transformers.js feeds float32 `pixel_values`
 *   unless the graph input is float16, so keeping inputs, outputs and compute in float32 is the variant
 *   that loads and runs everywhere, while the file is half the size. (ORT folds the Casts at load time.)
 * - q8: every weight MatMul quantized like onnxruntime's `quantize_dynamic` (QInt8 weights, per tensor,
 *   symmetric): DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q, x_zp, W_zp) → Cast → Mul(x_scale ·
 *   W_scale) → Add(bias). ORT fuses that chain into its DynamicQuantizeMatMul kernel. Embeddings,
 *   LayerNorms and the patch Conv stay float32 (quantize_dynamic's default MatMul-only behaviour).
 *
 * Linear weights are stored [in, out] (y = x · W + b), i.e. transposed from torch's [out, in].
 */
import type { ModelDtype } from '../types.js';
import {
  EOS_TOKEN_ID,
  LAYER_NORM_EPS,
  QUICK_GELU_ALPHA,
  type ClipArchSpec,
  type TowerSpec,
} from './clip-arch.js';
import { OnnxGraph } from './onnx-graph.js';
import { littleEndianBytes, quantizeSymmetricInt8, toFloat16Bytes } from './numeric.js';
import { fillNormal, Xoshiro128 } from './prng.js';

/** How a parameter is initialized: approximately normal with this mean and standard deviation. */
export interface ParamInit {
  readonly mean: number;
  readonly std: number;
}

/** Additive mask value for positions that must not be attended (finite, so fully masked rows stay finite). */
export const MASKED_SCORE = -1e9;

/**
 * The values of one named parameter of a synthesized model: the same for every precision variant.
 *
 * @example
 *   synthParamValues(0, 'text_projection.weight', 512 * 512, { mean: 0, std: 1 / Math.sqrt(512) });
 */
export function synthParamValues(seed: number, name: string, count: number, init: ParamInit): Float32Array {
  const out = new Float32Array(count);
  if (init.std === 0) return out.fill(init.mean);
  return fillNormal(out, Xoshiro128.forTensor(seed, name), init.mean, init.std);
}

/** Stores parameters and weight MatMuls of one graph in one precision. */
class Weights {
  constructor(
    private readonly g: OnnxGraph,
    private readonly seed: number,
    private readonly dtype: ModelDtype,
  ) {}

  /** A float32-valued parameter (stored as float16 + Cast in fp16 graphs). */
  param(name: string, dims: readonly number[], init: ParamInit): string {
    const count = dims.reduce((a, b) => a * b, 1);
    const values = (): Float32Array => synthParamValues(this.seed, name, count, init);
    if (this.dtype === 'fp16') {
      const stored = this.g.initializer(name, 'float16', dims, {
        byteLength: count * 2,
        produce: () => toFloat16Bytes(values()),
      });
      return this.g.op('Cast', [stored], { to: { i: 1 } });
    }
    return this.g.initializer(name, 'float32', dims, {
      byteLength: count * 4,
      produce: () => littleEndianBytes(values()),
    });
  }

  /**
   * y = x · W (+ b), W [inDim, outDim] named `${prefix}.weight` with std gain / √inDim (unit-variance
   * outputs for unit-variance inputs), b `${prefix}.bias`.
   */
  linear(x: string, prefix: string, inDim: number, outDim: number, bias: boolean, gain = 1): string {
    const name = `${prefix}.weight`;
    const init: ParamInit = { mean: 0, std: gain / Math.sqrt(inDim) };
    let y: string;
    if (this.dtype === 'q8') {
      y = this.quantizedMatMul(x, name, inDim, outDim, init);
    } else {
      y = this.g.op('MatMul', [x, this.param(name, [inDim, outDim], init)]);
    }
    if (!bias) return y;
    return this.g.op('Add', [y, this.param(`${prefix}.bias`, [outDim], { mean: 0, std: 0.02 })]);
  }

  private quantizedMatMul(x: string, name: string, inDim: number, outDim: number, init: ParamInit): string {
    const g = this.g;
    // The weight is written before its scale, so the scale produced with the weight is at hand then.
    let scale: number | undefined;
    const quantize = (): Int8Array => {
      const q = quantizeSymmetricInt8(synthParamValues(this.seed, name, inDim * outDim, init));
      scale = q.scale;
      return q.values;
    };
    const wq = g.initializer(`${name}_quantized`, 'int8', [inDim, outDim], {
      byteLength: inDim * outDim,
      produce: () => {
        const v = quantize();
        return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      },
    });
    const ws = g.initializer(`${name}_scale`, 'float32', [], {
      byteLength: 4,
      produce: () => {
        if (scale === undefined) quantize();
        return littleEndianBytes(Float32Array.of(scale!));
      },
    });
    const wzp = g.initializer(`${name}_zero_point`, 'int8', [], new Uint8Array(1));
    const [xq, xs, xzp] = g.node('DynamicQuantizeLinear', [x], {}, 3) as [string, string, string];
    const acc = g.op('MatMulInteger', [xq, wq, xzp, wzp]);
    const accFloat = g.op('Cast', [acc], { to: { i: 1 } });
    return g.op('Mul', [accFloat, g.op('Mul', [xs, ws])]);
  }
}

function layerNorm(g: OnnxGraph, w: Weights, x: string, prefix: string, hidden: number): string {
  const gamma = w.param(`${prefix}.weight`, [hidden], { mean: 1, std: 0.02 });
  const beta = w.param(`${prefix}.bias`, [hidden], { mean: 0, std: 0.02 });
  return g.op('LayerNormalization', [x, gamma, beta], { axis: { i: -1 }, epsilon: { f: LAYER_NORM_EPS } });
}

interface TowerConstants {
  /** [0, 0, heads, headDim]: split the hidden dim into heads (0 copies batch and sequence). */
  readonly splitHeads: string;
  /** [0, 0, hidden]: merge the heads back. */
  readonly mergeHeads: string;
  /** head_dim^-0.5 */
  readonly scale: string;
  readonly alpha: string;
}

function towerConstants(g: OnnxGraph, t: TowerSpec): TowerConstants {
  const headDim = t.hidden / t.heads;
  return {
    splitHeads: g.constInt64([0, 0, t.heads, headDim]),
    mergeHeads: g.constInt64([0, 0, t.hidden]),
    scale: g.constFloat([1 / Math.sqrt(headDim)], []),
    alpha: g.constFloat([QUICK_GELU_ALPHA], []),
  };
}

/** One pre-LN encoder layer of CLIPEncoder; `mask` is added to the attention scores when given. */
function encoderLayer(
  g: OnnxGraph,
  w: Weights,
  c: TowerConstants,
  t: TowerSpec,
  x: string,
  prefix: string,
  mask: string | undefined,
): string {
  const h = t.hidden;
  g.setScope(`/${prefix}/self_attn`);
  const normed = layerNorm(g, w, x, `${prefix}.layer_norm1`, h);
  const heads = (name: string, perm: number[], gain: number): string => {
    const projected = w.linear(normed, `${prefix}.self_attn.${name}`, h, h, true, gain);
    return g.op('Transpose', [g.op('Reshape', [projected, c.splitHeads])], { perm: { ints: perm } });
  };
  const q = heads('q_proj', [0, 2, 1, 3], t.qkGain); // [B, heads, S, D]
  const k = heads('k_proj', [0, 2, 3, 1], t.qkGain); // [B, heads, D, S]
  const v = heads('v_proj', [0, 2, 1, 3], 1); // [B, heads, S, D]
  let scores = g.op('Mul', [g.op('MatMul', [q, k]), c.scale]);
  if (mask !== undefined) scores = g.op('Add', [scores, mask]);
  const probs = g.op('Softmax', [scores], { axis: { i: -1 } });
  const context = g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: { ints: [0, 2, 1, 3] } });
  const attn = w.linear(g.op('Reshape', [context, c.mergeHeads]), `${prefix}.self_attn.out_proj`, h, h, true);
  const afterAttn = g.op('Add', [x, attn]);

  g.setScope(`/${prefix}/mlp`);
  const normed2 = layerNorm(g, w, afterAttn, `${prefix}.layer_norm2`, h);
  const fc1 = w.linear(normed2, `${prefix}.mlp.fc1`, h, t.mlp, true);
  const act = g.op('Mul', [fc1, g.op('Sigmoid', [g.op('Mul', [fc1, c.alpha])])]);
  const fc2 = w.linear(act, `${prefix}.mlp.fc2`, t.mlp, h, true);
  return g.op('Add', [afterAttn, fc2]);
}

/**
 * CLIPVisionModelWithProjection: `pixel_values` float32 [batch, 3, H, W] → `image_embeds` float32
 * [batch, projection_dim] (not normalized) and `last_hidden_state` [batch, 1 + patches, hidden].
 */
export function buildVisionGraph(spec: ClipArchSpec, seed: number, dtype: ModelDtype): OnnxGraph {
  const v = spec.vision;
  const g = new OnnxGraph('clip_vision_model');
  const w = new Weights(g, seed, dtype);
  const grid = v.imageSize / v.patchSize;
  const tokens = grid * grid + 1;
  const c = towerConstants(g, v);

  const pixels = g.input('pixel_values', 'float32', ['batch_size', v.channels, v.imageSize, v.imageSize]);
  g.setScope('/vision_model/embeddings');
  const patchWeight = w.param(
    'vision_model.embeddings.patch_embedding.weight',
    [v.hidden, v.channels, v.patchSize, v.patchSize],
    {
      mean: 0,
      std: 1 / Math.sqrt(v.channels * v.patchSize * v.patchSize),
    },
  );
  const patches = g.op('Conv', [pixels, patchWeight], {
    kernel_shape: { ints: [v.patchSize, v.patchSize] },
    strides: { ints: [v.patchSize, v.patchSize] },
  }); // [B, hidden, grid, grid]
  const flat = g.op('Transpose', [g.op('Reshape', [patches, g.constInt64([0, v.hidden, -1])])], {
    perm: { ints: [0, 2, 1] },
  }); // [B, patches, hidden]
  const classEmbedding = w.param('vision_model.embeddings.class_embedding', [v.hidden], {
    mean: 0,
    std: 1 / Math.sqrt(v.hidden),
  });
  const batch = g.op('Shape', [pixels], { start: { i: 0 }, end: { i: 1 } });
  const classShape = g.op('Concat', [batch, g.constInt64([1, v.hidden])], { axis: { i: 0 } });
  const classTokens = g.op('Expand', [
    g.op('Reshape', [classEmbedding, g.constInt64([1, 1, v.hidden])]),
    classShape,
  ]);
  const embeddings = g.op('Add', [
    g.op('Concat', [classTokens, flat], { axis: { i: 1 } }),
    w.param('vision_model.embeddings.position_embedding.weight', [tokens, v.hidden], { mean: 0, std: 0.02 }),
  ]);
  g.setScope('/vision_model/pre_layrnorm');
  let x = layerNorm(g, w, embeddings, 'vision_model.pre_layrnorm', v.hidden);
  for (let i = 0; i < v.layers; i++)
    x = encoderLayer(g, w, c, v, x, `vision_model.encoder.layers.${i}`, undefined);

  g.setScope('/vision_model/post_layernorm');
  const pooled = layerNorm(
    g,
    w,
    g.op('Gather', [x, g.constInt64([0], [])], { axis: { i: 1 } }),
    'vision_model.post_layernorm',
    v.hidden,
  );
  g.setScope('/visual_projection');
  const embeds = w.linear(pooled, 'visual_projection', v.hidden, spec.projectionDim, false);
  g.output(g.rename(embeds, 'image_embeds'), 'float32', ['batch_size', spec.projectionDim]);
  g.output(g.rename(x, 'last_hidden_state'), 'float32', ['batch_size', tokens, v.hidden]);
  return g;
}

/**
 * CLIPTextModelWithProjection: `input_ids` and `attention_mask` int64 [batch, sequence ≤ 77] →
 * `text_embeds` float32 [batch, projection_dim] (not normalized), pooled at the first end token
 * (ArgMax of input_ids, as eos 49407 is the largest id), and `last_hidden_state` [batch, sequence, hidden].
 *
 * Attention is causal; positions whose attention_mask is 0 are also masked (like transformers), which
 * cannot change the pooled output when only positions after the end token are padding.
 */
export function buildTextGraph(spec: ClipArchSpec, seed: number, dtype: ModelDtype): OnnxGraph {
  const t = spec.text;
  const g = new OnnxGraph('clip_text_model');
  const w = new Weights(g, seed, dtype);
  const c = towerConstants(g, t);
  if (EOS_TOKEN_ID !== t.vocabSize - 1) throw new Error('end-token pooling needs eos to be the largest id');

  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch_size', 'sequence_length']);

  g.setScope('/text_model/embeddings');
  const tokens = g.op('Gather', [
    w.param('text_model.embeddings.token_embedding.weight', [t.vocabSize, t.hidden], { mean: 0, std: 0.02 }),
    ids,
  ]);
  const seqLen = g.op('Shape', [ids], { start: { i: 1 }, end: { i: 2 } }); // [1]
  const zero = g.constInt64([0]);
  const positions = g.op('Slice', [
    w.param('text_model.embeddings.position_embedding.weight', [t.contextLength, t.hidden], {
      mean: 0,
      std: 0.01,
    }),
    zero,
    seqLen,
    zero,
  ]);
  let x = g.op('Add', [tokens, positions]);

  g.setScope('/text_model/mask');
  const causalValues = new Float32Array(t.contextLength * t.contextLength);
  for (let i = 0; i < t.contextLength; i++) {
    for (let j = i + 1; j < t.contextLength; j++) causalValues[i * t.contextLength + j] = MASKED_SCORE;
  }
  const causalFull = g.initializer(
    'text_model.causal_mask',
    'float32',
    [t.contextLength, t.contextLength],
    littleEndianBytes(causalValues),
  );
  const causal = g.op('Slice', [
    causalFull,
    g.constInt64([0, 0]),
    g.op('Concat', [seqLen, seqLen], { axis: { i: 0 } }),
    g.constInt64([0, 1]),
  ]); // [S, S]
  const padded = g.op('Equal', [attentionMask, g.constInt64([0], [])]);
  const padScores = g.op('Where', [padded, g.constFloat([MASKED_SCORE], []), g.constFloat([0], [])]);
  const padMask = g.op('Unsqueeze', [padScores, g.constInt64([1, 2])]); // [B, 1, 1, S]
  const mask = g.op('Add', [causal, padMask]); // [B, 1, S, S]

  for (let i = 0; i < t.layers; i++) x = encoderLayer(g, w, c, t, x, `text_model.encoder.layers.${i}`, mask);
  g.setScope('/text_model/final_layer_norm');
  const last = layerNorm(g, w, x, 'text_model.final_layer_norm', t.hidden);

  g.setScope('/text_model/pooler');
  const eosIndex = g.op('ArgMax', [g.op('Cast', [ids], { to: { i: 6 } })], {
    axis: { i: -1 },
    keepdims: { i: 0 },
    select_last_index: { i: 0 },
  }); // [B]
  const pooled = g.op('GatherND', [last, g.op('Unsqueeze', [eosIndex, g.constInt64([1])])], {
    batch_dims: { i: 1 },
  });
  g.setScope('/text_projection');
  const embeds = w.linear(pooled, 'text_projection', t.hidden, spec.projectionDim, false);
  g.output(g.rename(embeds, 'text_embeds'), 'float32', ['batch_size', spec.projectionDim]);
  g.output(g.rename(last, 'last_hidden_state'), 'float32', ['batch_size', 'sequence_length', t.hidden]);
  return g;
}
