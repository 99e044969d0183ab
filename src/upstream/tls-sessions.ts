// TLS sessions kept for wire.ts connections, so that a large blob's connection of its own resumes
// a session instead of paying a full handshake. node:https agents cache their own sessions; this
// is only for the connections wire.ts makes.
//
// Resuming skips checks a new connection makes: node takes the verification result stored in the
// session and does not call checkServerIdentity on a resumed one (_tls_wrap.js onConnectSecure).
// So a session is only ever offered to a connection that would verify exactly as the one that
// earned it did, and present the same identity: the same host, port and server name, the same
// trust (CA) and the same client certificate. A session is only kept from a connection that was
// authorized.

import { createHash } from 'node:crypto'
import type { ConnectionOptions, SecureContext, TLSSocket } from 'node:tls'
import { Lru } from '../lru.js'

/** What a new connection adds to its options, and how it gives back the sessions it is sent. */
export interface Resumption {
  readonly options: { session?: Buffer }
  /** Keeps the newest session the socket is sent, once it is authorized. */
  watch(socket: TLSSocket): void
}

/**
 * The newest session per (host, port, server name, trust, client certificate), for at most
 * `capacity` of them; the least recently used goes first. Sessions are kept in memory only.
 */
export class TlsSessions {
  readonly #sessions: Lru<Buffer>
  readonly #onHandshake: ((resumed: boolean) => void) | undefined

  /**
   * `onHandshake` hears of every completed handshake of a watched connection, resumed or full: an
   * operator's only way to see that resumption works against a real CDN (a metric).
   */
  constructor(capacity: number, onHandshake?: (resumed: boolean) => void) {
    this.#sessions = new Lru(capacity)
    this.#onHandshake = onHandshake
  }

  get size(): number {
    return this.#sessions.size
  }

  /**
   * The cache's key for a connection, or undefined when its sessions must not be cached: when it
   * does not reject an unauthorized server, or checks identity its own way, which the key cannot
   * tell apart.
   */
  key(host: string, port: number, tls: ConnectionOptions): string | undefined {
    if (tls.rejectUnauthorized === false || tls.checkServerIdentity !== undefined || tls.session !== undefined || tls.pfx !== undefined) return undefined
    // A secure context holds its CAs and client certificate; node ignores `ca`, `cert` and `key`
    // beside one, so the context alone tells the settings apart.
    const settings = tls.secureContext !== undefined ? contextOf(tls.secureContext) : [trustOf(tls.ca), identityOf(tls.cert)]
    return JSON.stringify([host, port, tls.servername ?? '', settings])
  }

  get(key: string): Buffer | undefined {
    return this.#sessions.get(key)
  }

  set(key: string, session: Buffer): void {
    this.#sessions.set(key, session)
  }

  delete(key: string): void {
    this.#sessions.delete(key)
  }

  /** For a new connection to `host:port` with `tls`: the session to offer, if any. */
  resumption(host: string, port: number, tls: ConnectionOptions): Resumption | undefined {
    const key = this.key(host, port, tls)
    if (key === undefined) return undefined
    const session = this.get(key)
    return {
      options: session === undefined ? {} : { session },
      watch: (socket) => {
        let secured = false
        socket.once('secureConnect', () => {
          secured = true
          this.#onHandshake?.(socket.isSessionReused())
        })
        // TLS 1.3 sends tickets after the handshake, often two; each replaces the last. Node holds
        // a session back until the peer is verified, but keeps emitting it when verification
        // failed and the caller chose not to reject: `authorized` is the check that matters.
        socket.on('session', (next: Buffer) => {
          if (socket.authorized) this.set(key, next)
        })
        // A connection that failed before its handshake completed (a refused certificate, a
        // ticket the server choked on, or no connection at all) leaves nothing worth offering
        // that host again: the next one starts afresh.
        socket.once('error', () => {
          if (!secured) this.delete(key)
        })
      },
    }
  }
}

/** The CAs a connection trusts, as a digest; the system's by default. */
function trustOf(ca: ConnectionOptions['ca']): string {
  return ca === undefined ? 'system' : digestOf(ca)
}

/** The client certificate a connection presents, as a digest; none by default. */
function identityOf(cert: ConnectionOptions['cert']): string {
  return cert === undefined ? 'anonymous' : digestOf(cert)
}

function digestOf(pems: string | Buffer | ReadonlyArray<string | Buffer>): string {
  const hash = createHash('sha256')
  for (const one of Array.isArray(pems) ? pems : [pems]) hash.update(createHash('sha256').update(one).digest())
  return hash.digest('hex')
}

/**
 * A name for each secure context, for as long as it lives: contexts are made once per upstream
 * and setting each time its files are read (upstream/tls-settings.ts), so the same object means
 * the same settings, and a renewal (SIGHUP) never shares a name, and so a session, with the
 * contexts it replaces. Names are never reused.
 */
const contexts = new WeakMap<SecureContext, string>()
let contextCount = 0

function contextOf(context: SecureContext): string {
  let name = contexts.get(context)
  if (name === undefined) {
    name = `context ${++contextCount}`
    contexts.set(context, name)
  }
  return name
}
