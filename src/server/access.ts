import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/** Names and addresses that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || bare.startsWith('::ffff:127.');
  return false;
}

/** The host part of a `Host` header value, without port and brackets. */
function hostName(header: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(header);
  if (bracketed) return bracketed[1].toLowerCase();
  return header.replace(/:\d+$/, '').toLowerCase();
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export type AccessDecision = { readonly ok: true } | { readonly ok: false; readonly status: 401 | 403; readonly message: string };

const ALLOWED: AccessDecision = { ok: true };

/**
 * Who may talk to the sidecar.
 * - With a token, every request must carry it (`Authorization: Bearer` or `?token=`).
 * - Without one the server only listens on loopback, and the `Host` header must name a loopback
 *   host too: that stops DNS rebinding, where a web page's own host name resolves to 127.0.0.1.
 * - A WebSocket upgrade that carries an `Origin` must come from this server's own origin
 *   (`http://` or `https://` + the Host), so a page on another site cannot drive the sidecar
 *   through the user's browser.
 */
export class AccessPolicy {
  readonly #tokenDigest: Buffer | undefined;

  constructor(options: { readonly token?: string }) {
    this.#tokenDigest = options.token ? digest(options.token) : undefined;
  }

  /** Checks the Host header (without a token) and, unless `needsToken` is false, the token (with one). */
  checkRequest(request: IncomingMessage, url: URL, needsToken = true): AccessDecision {
    const host = request.headers.host;
    if (host === undefined) return { ok: false, status: 403, message: 'the request has no Host header' };
    if (this.#tokenDigest === undefined) {
      if (!isLoopbackHost(hostName(host))) {
        return { ok: false, status: 403, message: `Host "${host}" is not this machine; start the server with --token to serve other host names` };
      }
      return ALLOWED;
    }
    if (!needsToken) return ALLOWED;
    const presented = bearerToken(request) ?? url.searchParams.get('token');
    if (presented === null || presented === undefined) {
      return { ok: false, status: 401, message: 'a token is required: send "Authorization: Bearer <token>" or add ?token=<token> to the URL' };
    }
    if (!timingSafeEqual(digest(presented), this.#tokenDigest)) return { ok: false, status: 401, message: 'the token is wrong' };
    return ALLOWED;
  }

  /** Checks a WebSocket upgrade: the request itself, then its Origin, if any. */
  checkUpgrade(request: IncomingMessage, url: URL): AccessDecision {
    const decision = this.checkRequest(request, url);
    if (!decision.ok) return decision;
    const origin = request.headers.origin;
    if (origin === undefined) return ALLOWED;
    // The viewer page's origin is its URL's scheme and host; https when a TLS proxy in front keeps the Host.
    const host = request.headers.host?.toLowerCase();
    const presented = origin.toLowerCase();
    if (presented !== `http://${host}` && presented !== `https://${host}`) {
      return { ok: false, status: 403, message: `cross-origin WebSocket from ${origin} refused; only pages served by this sidecar (http://${host}) may connect` };
    }
    return ALLOWED;
  }
}

function bearerToken(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match ? match[1] : undefined;
}
