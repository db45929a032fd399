import { HubApiError, InvalidApiResponseFormatError } from '@huggingface/hub';
import { BridgeError } from '../errors.ts';
import { InterruptedTransfer } from './hub-download.ts';
import type { ModelSpec } from './registry.ts';

export interface FailureContext {
  readonly spec: ModelSpec;
  readonly hubUrl: string;
  readonly cacheDir: string;
  readonly tokenGiven: boolean;
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function httpFailure(status: number, context: FailureContext): string {
  const { spec, hubUrl } = context;
  const where = `${hubUrl} (${spec.repo}, ${spec.path} at ${spec.revision})`;
  if (status === 401) {
    return context.tokenGiven
      ? `${where} rejected the access token (401): check HF_TOKEN`
      : `${where} asks for a login (401): set HF_TOKEN to an access token (https://huggingface.co/settings/tokens)`;
  }
  if (status === 403) return `${where} denied access (403): the token in HF_TOKEN lacks read access to ${spec.repo}`;
  if (status === 404) {
    const mirror = hubUrl === 'https://huggingface.co' ? '' : `; the mirror in HF_ENDPOINT may not carry ${spec.repo}`;
    return `${where} has no such file (404)${mirror}`;
  }
  if (status === 429) return `${where} is rate limiting downloads (429): wait a minute and try again`;
  if (status >= 500) return `${where} failed with status ${status}: try again later`;
  return `${where} answered status ${status}`;
}

/** Why the network call failed, in words: undici reports it as `TypeError: fetch failed` with a coded cause. */
function networkFailure(error: Error, context: FailureContext): string | undefined {
  const cause = (error as { cause?: unknown }).cause;
  const code = errnoCode(cause) ?? errnoCode(error);
  const host = (() => {
    try {
      return new URL(context.hubUrl).host;
    } catch {
      return context.hubUrl;
    }
  })();
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot look up ${host} (${code}): no network or no DNS; connect, or set HF_ENDPOINT to a reachable mirror`;
    case 'ECONNREFUSED':
      return `nothing answers at ${context.hubUrl} (connection refused); if HF_ENDPOINT names a mirror, check it is running`;
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return `${host} did not answer in time (${code}); check the network or a proxy, then run again`;
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return `the connection to ${host} broke during the transfer (${code}); run again: the download resumes where it stopped`;
    default:
      break;
  }
  if (error instanceof TypeError && (error.message === 'fetch failed' || error.message === 'terminated')) {
    const detail = cause instanceof Error ? cause.message : String(cause ?? error.message);
    return `cannot reach ${context.hubUrl}: ${detail}`;
  }
  return undefined;
}

function diskFailure(code: string | undefined, context: FailureContext): string | undefined {
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return `the disk is full while writing into ${context.cacheDir}: free some space, or set HF_HUB_CACHE to a folder on a disk with room`;
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return `cannot write into ${context.cacheDir} (${code}): set HF_HUB_CACHE to a folder you can write`;
  }
  return undefined;
}

/** What went wrong talking to the hub, in words; undefined for errors that are not about the hub, the network or the disk. */
export function failureReason(error: unknown, context: FailureContext): string | undefined {
  if (error instanceof HubApiError) return httpFailure(error.statusCode, context);
  if (error instanceof InterruptedTransfer) return `the transfer was interrupted (${error.message}); run again: it resumes where it stopped`;
  if (error instanceof InvalidApiResponseFormatError) {
    return `${context.hubUrl} answered in an unexpected format (${error.message}); if HF_ENDPOINT names a mirror, check it serves the Hugging Face API`;
  }
  if (error instanceof Error) return networkFailure(error, context) ?? diskFailure(errnoCode(error), context);
  return undefined;
}

/**
 * Turns whatever a download threw into a `model_unavailable` error that says what happened and
 * what fixes it, ending with `alternative` (e.g. "or download <url> and save it as <path>").
 * Errors that are not about the hub, the network or the disk are bugs and pass through.
 */
export function hubFailure(error: unknown, context: FailureContext, alternative: string): unknown {
  if (error instanceof BridgeError) return error;
  const reason = failureReason(error, context);
  return reason === undefined ? error : new BridgeError('model_unavailable', `cannot download ${context.spec.name}: ${reason}; ${alternative}`, { cause: error });
}

const BROKEN_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);

/** Failures that another try can cure (a dropped connection, a busy server); not a wrong token or a full disk. */
export function isTransient(error: unknown): boolean {
  if (error instanceof InterruptedTransfer) return true;
  if (error instanceof HubApiError) return error.statusCode >= 500;
  if (!(error instanceof Error)) return false;
  const code = errnoCode((error as { cause?: unknown }).cause) ?? errnoCode(error);
  return code !== undefined ? BROKEN_CONNECTION.has(code) : error instanceof TypeError && error.message === 'terminated';
}
