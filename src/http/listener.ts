// The listener's limits against hostile clients, from `listen.*`: node:http does the work, but
// some of it only at creation (header size, the timeout check interval) and some on the server
// object (idle sockets, connection cap). main.ts and the test harness both build the listener
// through here, so the tests exercise the limits production runs with.

import type { Server, ServerOptions } from 'node:http'
import type { Config } from '../config/schema.js'

export type ListenConfig = Config['listen']

/** Options for http.createServer / https.createServer. */
export function listenerOptions(listen: ListenConfig): ServerOptions {
  return {
    headersTimeout: listen.headersTimeout,
    requestTimeout: listen.requestTimeout,
    keepAliveTimeout: listen.keepAliveTimeout,
    maxHeaderSize: listen.maxHeaderSize,
    // node:http checks header and request timeouts on this interval (30 s by default), so a
    // short timeout needs a matching check or it is enforced up to 30 s late.
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(listen.headersTimeout / 2))),
  }
}

/** The limits set on the server object itself. */
export function applyListenerLimits(server: Server, listen: ListenConfig): void {
  // A client that stops reading a response (a blob) holds its socket and the cache file open;
  // no header or request timeout covers it once the request is in. This closes any socket with
  // no bytes moving either way, also one that connects and never sends (with requestTimeout 0,
  // as main.ts had, node:http never timed such a socket out at all).
  server.setTimeout(listen.idleTimeout)
  server.keepAliveTimeout = listen.keepAliveTimeout
  server.maxConnections = listen.maxConnections
}
