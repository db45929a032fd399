import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { AccessPolicy } from './access.ts';
import { requestTarget } from './request-target.ts';

/** The viewer's files, read once at start: users need no build step and the server no file access per request. */
const VIEWER_DIR = new URL('../viewer/', import.meta.url);

interface StaticFile {
  readonly type: string;
  readonly body: Buffer;
}

/**
 * msgpackr's browser build, as the package ships it: the build without `new Function`, since the
 * page's Content-Security-Policy allows no eval. Found next to the entry the package exports for it.
 */
const MSGPACKR_BROWSER_BUILD = new URL('index-no-eval.min.js', pathToFileURL(createRequire(import.meta.url).resolve('msgpackr/index-no-eval')));

function load(file: URL, type: string): StaticFile {
  return { type, body: readFileSync(file) };
}

const PAGE_HEADERS = {
  // The page only talks to its own origin; the token in its URL must not leak through Referer.
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

export interface HttpEndpoints {
  readonly health: () => object;
  readonly metrics: () => string;
}

/** Serves `GET /` (viewer), its assets, `/healthz` and `/metrics`. */
export function createHttpHandler(access: AccessPolicy, endpoints: HttpEndpoints): (request: IncomingMessage, response: ServerResponse) => void {
  const page = load(new URL('index.html', VIEWER_DIR), 'text/html; charset=utf-8');
  const assets: Record<string, StaticFile> = {
    '/viewer.js': load(new URL('viewer.js', VIEWER_DIR), 'text/javascript; charset=utf-8'),
    '/viewer.css': load(new URL('viewer.css', VIEWER_DIR), 'text/css; charset=utf-8'),
    '/msgpackr.js': load(MSGPACKR_BROWSER_BUILD, 'text/javascript; charset=utf-8'),
  };

  const send = (response: ServerResponse, status: number, type: string, body: string | Buffer, head: boolean): void => {
    response.writeHead(status, { ...PAGE_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    response.end(head ? undefined : body);
  };
  const notFound = (response: ServerResponse, target: string, head: boolean): void =>
    send(response, 404, 'text/plain; charset=utf-8', `nothing at ${target}; the viewer is at /, the WebSocket at /ws\n`, head);

  return (request, response) => {
    const url = requestTarget(request);
    const head = request.method === 'HEAD';
    if (request.method !== 'GET' && !head) {
      response.setHeader('Allow', 'GET, HEAD');
      send(response, 405, 'text/plain; charset=utf-8', 'only GET and HEAD are served over HTTP; requests go over the WebSocket at /ws\n', head);
      return;
    }
    if (url === undefined) {
      notFound(response, request.url ?? '', head);
      return;
    }
    const asset = assets[url.pathname];
    const favicon = url.pathname === '/favicon.ico';
    // Static assets hold no data, so a page opened with ?token= can load them without it.
    const decision = access.checkRequest(request, url, asset === undefined && !favicon);
    if (!decision.ok) {
      send(response, decision.status, 'text/plain; charset=utf-8', `${decision.message}\n`, head);
      return;
    }
    if (asset !== undefined) {
      send(response, 200, asset.type, asset.body, head);
      return;
    }
    if (favicon) {
      // Browsers ask for it; an empty answer keeps their consoles free of 404s.
      response.writeHead(204).end();
      return;
    }
    switch (url.pathname) {
      case '/':
      case '/index.html':
        send(response, 200, page.type, page.body, head);
        return;
      case '/healthz':
        send(response, 200, 'application/json', `${JSON.stringify(endpoints.health())}\n`, head);
        return;
      case '/metrics':
        send(response, 200, 'text/plain; version=0.0.4; charset=utf-8', endpoints.metrics(), head);
        return;
      default:
        notFound(response, url.pathname, head);
    }
  };
}
