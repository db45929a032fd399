import type { IncomingMessage } from 'node:http';

/**
 * The path and query a request asks for, or undefined when its target names no path (`*`).
 * A target starting with `//` is a path too: `new URL(target, base)` would read it as a host
 * and throw on anything that is not one. An absolute-form target (`GET http://host/path`)
 * gives its own path.
 */
export function requestTarget(request: IncomingMessage): URL | undefined {
  const target = request.url ?? '/';
  if (target.startsWith('/')) return new URL(`http://sidecar${target}`);
  if (!URL.canParse(target)) return undefined;
  const absolute = new URL(target);
  return new URL(`http://sidecar${absolute.pathname}${absolute.search}`);
}
