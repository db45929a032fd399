/** The part of a connection the heartbeat uses (a `ws` WebSocket). */
export interface HeartbeatPeer {
  /** Bytes written but not yet taken by the network: when it shrinks, the peer is reading. */
  readonly bufferedAmount: number;
  ping(): void;
}

interface PeerState {
  /** When the peer last showed it is there (performance.now()). */
  lastSign: number;
  /** When it was pinged and has not answered yet. */
  pingedAt: number | undefined;
  /** Its bufferedAmount at the previous check. */
  backlog: number;
}

export interface HeartbeatOptions<Peer extends HeartbeatPeer> {
  /** A peer silent this long is pinged; one that stays silent as long again is given up. */
  readonly intervalMs: number;
  /** Called once for a peer that did not answer, with how long it has been silent; the caller closes it. */
  readonly onSilent: (peer: Peer, silentMs: number) => void;
}

/** Checks per interval: a silent peer is dropped between 2 and 2.5 intervals after its last sign of life. */
const CHECKS_PER_INTERVAL = 4;

/**
 * Finds peers that vanished without closing their connection (a laptop that slept, a Wi-Fi
 * drop, a killed VM): their TCP connection looks open forever and would hold a connection slot.
 *
 * A frame, a ping or a pong from a peer, or the peer taking bytes we sent, is a sign of life.
 * A peer without one for an interval is pinged (clients answer pings by themselves, no code
 * needed); a peer that then stays silent for another interval is given up.
 *
 * Time counts only while this process runs: when the checks come late (the machine slept, or
 * the event loop was held up and could not read the answers), the clocks move on by the delay,
 * so no peer is dropped for a silence that was ours.
 */
export class Heartbeat<Peer extends HeartbeatPeer> {
  readonly #options: HeartbeatOptions<Peer>;
  readonly #peers = new Map<Peer, PeerState>();
  readonly #checkMs: number;
  #timer: NodeJS.Timeout | undefined;
  #lastCheck = 0;

  constructor(options: HeartbeatOptions<Peer>) {
    this.#options = options;
    this.#checkMs = Math.max(1, Math.floor(options.intervalMs / CHECKS_PER_INTERVAL));
  }

  start(): void {
    this.#lastCheck = performance.now();
    this.#timer = setInterval(() => this.#check(performance.now()), this.#checkMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  add(peer: Peer): void {
    this.#peers.set(peer, { lastSign: performance.now(), pingedAt: undefined, backlog: peer.bufferedAmount });
  }

  remove(peer: Peer): void {
    this.#peers.delete(peer);
  }

  /** The peer sent something: a frame, a ping or a pong. */
  heard(peer: Peer): void {
    const state = this.#peers.get(peer);
    if (state !== undefined) state.lastSign = performance.now();
  }

  #check(now: number): void {
    const delay = now - this.#lastCheck - this.#checkMs;
    this.#lastCheck = now;
    const { intervalMs } = this.#options;
    for (const [peer, state] of this.#peers) {
      if (delay > this.#checkMs) {
        state.lastSign += delay;
        if (state.pingedAt !== undefined) state.pingedAt += delay;
      }
      const backlog = peer.bufferedAmount;
      if (backlog < state.backlog) state.lastSign = now;
      state.backlog = backlog;
      if (state.pingedAt !== undefined && state.lastSign >= state.pingedAt) state.pingedAt = undefined;
      if (state.pingedAt !== undefined) {
        if (now - state.pingedAt >= intervalMs) {
          this.#peers.delete(peer);
          this.#options.onSilent(peer, now - state.lastSign);
        }
      } else if (now - state.lastSign >= intervalMs) {
        state.pingedAt = now;
        peer.ping();
      }
    }
  }
}
