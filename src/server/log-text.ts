/**
 * Characters that must not reach a log verbatim from a client: C0 and C1 controls (newlines that
 * forge log lines, ESC and CSI that drive terminals), DEL, the Unicode line and paragraph
 * separators, and the bidirectional overrides that make text display differently from what it is.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069"\\]/g;

/** A client-supplied name as a quoted string that prints on one line, exactly as received. */
export function printable(text: string): string {
  const escaped = text.replace(UNSAFE, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  return `"${escaped}"`;
}
