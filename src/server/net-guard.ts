/**
 * Fetching images from user-given URLs without becoming a proxy into the server's network (SSRF):
 * only http/https; the host is resolved once and every address it resolves to must be public (or inside a
 * configured allow-list); the connection goes to that exact address (a custom `lookup`, a fresh socket per
 * hop, so DNS cannot answer differently the second time); every redirect hop is checked the same way; the
 * body is capped in bytes and the whole exchange in time.
 *
 * Odd IPv4 spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) are canonicalized by the WHATWG URL
 * parser before the check, and IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
 */
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { GlimpseError } from '../errors/index.js';

/** What the guard lets through, from the server configuration. */
export interface FetchPolicy {
  /** Let every address through (private networks included). */
  readonly allowPrivate: boolean;
  /** Non-public ranges let through anyway (`127.0.0.1/32`, `10.0.0.0/8`). */
  readonly allowedCidrs: readonly string[];
  readonly maxBytes: number;
  readonly timeoutMs: number;
  readonly maxRedirects: number;
}

/** Special-purpose ranges (IANA registries) that are not public unicast addresses. */
const BLOCKED_V4: readonly [string, number][] = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];
const BLOCKED_V6: readonly [string, number][] = [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments (Teredo, ORCHIDs, …)
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
];

function blockListOf(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const r of ranges) {
    const [addr, prefix] = r.split('/');
    const family = isIP(addr ?? '');
    if (family === 0) continue;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(prefix), type);
  }
  return list;
}

const NON_PUBLIC = (() => {
  const list = new BlockList();
  for (const [a, p] of BLOCKED_V4) list.addSubnet(a, p, 'ipv4');
  for (const [a, p] of BLOCKED_V6) list.addSubnet(a, p, 'ipv6');
  return list;
})();

/** The IPv4 address an IPv6 address carries (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`). */
function embeddedIpv4(address: string): string | undefined {
  const groups = expandIpv6(address);
  if (groups === undefined) return undefined;
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number): boolean => groups.slice(from, to).every((g) => g === 0);
  if (zero(0, 5) && groups[5] === 0xffff) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zero(2, 6)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
  if (zero(0, 6) && (groups[6] !== 0 || groups[7]! > 1)) return v4(groups[6]!, groups[7]!); // IPv4-compatible
  return undefined;
}

function expandIpv6(address: string): number[] | undefined {
  let text = address.replace(/^\[|\]$/g, '').split('%')[0]!;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const parts = tail[1]!.split('.').map(Number);
    const hex = [((parts[0]! << 8) | parts[1]!).toString(16), ((parts[2]! << 8) | parts[3]!).toString(16)];
    text = text.slice(0, -tail[1]!.length) + hex.join(':');
  }
  const [head, rest] = text.split('::');
  const h = head ? head.split(':') : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const fill = rest === undefined ? 0 : 8 - h.length - r.length;
  if (fill < 0) return undefined;
  const groups = [...h, ...new Array<string>(fill).fill('0'), ...r].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : undefined;
}

/**
 * Whether an IP address is a public unicast address (false for loopback, private, link-local, CGNAT,
 * multicast, unspecified, documentation, ULA, and IPv6 forms that carry such an IPv4 address).
 *
 * @example
 *   isPublicAddress('8.8.8.8');          // true
 *   isPublicAddress('::ffff:127.0.0.1'); // false
 */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return !NON_PUBLIC.check(address, 'ipv4');
  if (family !== 6) return false;
  if (NON_PUBLIC.check(address, 'ipv6')) return false;
  const v4 = embeddedIpv4(address);
  if (v4 !== undefined) return !NON_PUBLIC.check(v4, 'ipv4');
  return true;
}

function forbidden(url: string, why: string): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_SERVER_FORBIDDEN_URL',
    `Expected a public http(s) URL but ${url} ${why}`,
    {
      details: { url },
    },
  );
}

/** A URL guard bound to a policy: `check` validates one URL, `fetch` downloads it safely. */
export class UrlGuard {
  private readonly allowed: BlockList;

  constructor(readonly policy: FetchPolicy) {
    this.allowed = blockListOf(policy.allowedCidrs);
  }

  private addressAllowed(address: string): boolean {
    if (this.policy.allowPrivate) return true;
    const family = isIP(address);
    if (family === 0) return false;
    if (this.allowed.check(address, family === 4 ? 'ipv4' : 'ipv6')) return true;
    const v4 = family === 6 ? embeddedIpv4(address) : undefined;
    if (v4 !== undefined && this.allowed.check(v4, 'ipv4')) return true;
    return isPublicAddress(address);
  }

  /**
   * Parses and resolves a URL; returns the canonical URL and the one address to connect to, or throws
   * GLIMPSE_E_SERVER_FORBIDDEN_URL. Every address the name resolves to must be allowed.
   *
   * @example
   *   await guard.check('http://0177.0.0.1/x.jpg'); // throws: 127.0.0.1 is loopback
   */
  async check(raw: string): Promise<{ url: URL; address: string; family: 4 | 6 }> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw forbidden(JSON.stringify(raw.slice(0, 200)), 'is not a valid URL');
    }
    const shown = url.href.length > 200 ? `${url.href.slice(0, 197)}...` : url.href;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw forbidden(shown, `uses ${url.protocol.replace(/:$/, '')}:, not http or https`);
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let addresses: { address: string; family: number }[];
    if (isIP(host) !== 0) {
      addresses = [{ address: host, family: isIP(host) }];
    } else {
      try {
        addresses = await dnsLookup(host, { all: true, verbatim: true });
      } catch {
        throw new GlimpseError(
          'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
          `Expected ${shown} to resolve but its host name ${host} has no address`,
          { details: { url: shown } },
        );
      }
    }
    const refused = addresses.find((a) => !this.addressAllowed(a.address));
    if (refused !== undefined || addresses.length === 0) {
      throw forbidden(shown, `resolves to ${refused?.address ?? 'nothing'}, which is not a public address`);
    }
    const first = addresses[0]!;
    return { url, address: first.address, family: first.family === 6 ? 6 : 4 };
  }

  /**
   * Downloads a URL's body: each hop checked (`check`), connected to the checked address, redirects followed
   * up to `maxRedirects`, at most `maxBytes` (GLIMPSE_E_IMAGE_TOO_LARGE beyond) within `timeoutMs`.
   *
   * @example
   *   const guard = new UrlGuard({ allowPrivate: false, allowedCidrs: [], maxBytes: 10e6, timeoutMs: 10_000, maxRedirects: 3 });
   *   const bytes = await guard.fetch('https://example.com/cat.jpg');
   */
  async fetch(raw: string, signal?: AbortSignal): Promise<Uint8Array> {
    const deadline = AbortSignal.timeout(this.policy.timeoutMs);
    const combined = signal ? AbortSignal.any([deadline, signal]) : deadline;
    let current = raw;
    for (let hop = 0; ; hop++) {
      const target = await this.check(current);
      const res = await this.open(target, combined);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location !== undefined) {
        res.resume();
        if (hop >= this.policy.maxRedirects) {
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_REDIRECT_LIMIT',
            `Expected at most ${this.policy.maxRedirects} redirects from ${raw} but it redirects more`,
            { details: { url: raw } },
          );
        }
        current = new URL(res.headers.location, target.url).href;
        continue;
      }
      if (status !== 200) {
        res.resume();
        throw new GlimpseError(
          'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
          `Expected HTTP 200 from ${target.url.href} but received ${status}`,
          { details: { url: target.url.href, status } },
        );
      }
      return this.readBody(res, target.url.href, combined);
    }
  }

  private open(
    target: { url: URL; address: string; family: 4 | 6 },
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const { url, address, family } = target;
    // Connect to the checked address whatever name the URL has; TLS still verifies the name.
    const lookup: LookupFunction = (_host, options, callback) => {
      if (options.all) callback(null, [{ address, family }]);
      else callback(null, address, family);
    };
    const options: RequestOptions = {
      method: 'GET',
      agent: false,
      lookup,
      signal,
      headers: { 'user-agent': 'glimpse-server', accept: 'image/*' },
    };
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolvePromise, reject) => {
      const req = send(url, options, resolvePromise);
      req.on('error', (err) => reject(this.networkError(url.href, err, signal)));
      req.end();
    });
  }

  private networkError(url: string, err: unknown, signal: AbortSignal): GlimpseError {
    if (signal.aborted) {
      return new GlimpseError(
        'GLIMPSE_E_STORAGE_TIMEOUT',
        `Expected ${url} within ${this.policy.timeoutMs} ms but it took longer`,
        { details: { url } },
      );
    }
    const code = (err as NodeJS.ErrnoException).code ?? 'network error';
    return new GlimpseError('GLIMPSE_E_SOURCE_DOWNLOAD_FAILED', `Expected to download ${url} but ${code}`, {
      details: { url },
    });
  }

  private async readBody(res: IncomingMessage, url: string, signal: AbortSignal): Promise<Uint8Array> {
    const max = this.policy.maxBytes;
    const tooLarge = (): GlimpseError =>
      new GlimpseError(
        'GLIMPSE_E_IMAGE_TOO_LARGE',
        `Expected at most ${max} bytes from ${url} but it has more`,
        {
          details: { url, maxBytes: max },
        },
      );
    const declared = Number(res.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > max) {
      res.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res) {
        const buf = chunk as Buffer;
        total += buf.length;
        if (total > max) {
          res.destroy();
          throw tooLarge();
        }
        chunks.push(buf);
      }
    } catch (err) {
      if (err instanceof GlimpseError) throw err;
      throw this.networkError(url, err, signal);
    }
    return Buffer.concat(chunks, total);
  }
}
