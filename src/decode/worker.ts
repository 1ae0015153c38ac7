/**
 * Decode worker thread: receives image inputs, returns uint8 HWC crops (transferred, not copied).
 * Float tensors are made on the inference side, so 4× fewer bytes cross threads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isGlimpseError } from '../errors/index.js';
import type { PreprocessConfig } from '../models/types.js';
import { preprocessToCrop } from './preprocess.js';
import type { DecodeLimits, DecodeReply, DecodeRequest } from './pool.js';

interface WorkerInit {
  preprocess: PreprocessConfig;
  limits: DecodeLimits;
  mode: 'exact' | 'fast';
}

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('decode worker must run in a worker thread');

port.on('message', (msg: DecodeRequest) => {
  void handle(msg);
});

async function handle(msg: DecodeRequest): Promise<void> {
  let reply: DecodeReply;
  try {
    const crop = await preprocessToCrop(msg.input, init.preprocess, { ...init.limits, mode: init.mode });
    reply = { id: msg.id, ok: true, data: crop.data, width: crop.width, height: crop.height };
    port!.postMessage(reply, [crop.data.buffer as ArrayBuffer]);
    return;
  } catch (err) {
    reply = isGlimpseError(err)
      ? { id: msg.id, ok: false, code: err.code, message: err.message }
      : {
          id: msg.id,
          ok: false,
          code: 'GLIMPSE_E_IMAGE_DECODE_FAILED',
          message: `Expected a decodable image but decoding failed: ${err instanceof Error ? err.message : String(err)}`,
        };
  }
  port!.postMessage(reply);
}
