// Who a request comes from, when the client presented a certificate the client CA vouches for:
// the subject CN, for the access log. Plain HTTP and unverified certificates have no identity.
// Also the connection's remote address, for quarantine records.

import { IncomingMessage } from 'node:http'
import { TLSSocket } from 'node:tls'

/**
 * The remote address of a request's connection, given @hono/node-server's bindings; undefined
 * for in-process `app.request()` calls, which have none.
 */
export function clientAddress(bindings: unknown): string | undefined {
  if (typeof bindings !== 'object' || bindings === null || !('incoming' in bindings)) {
    return undefined
  }
  const { incoming } = bindings
  if (!(incoming instanceof IncomingMessage)) return undefined
  return incoming.socket.remoteAddress
}

/** Per connection: a keep-alive connection carries many requests and one certificate. */
const identities = new WeakMap<TLSSocket, string | null>()

/**
 * The CN of the verified client certificate on the connection of a request, given
 * @hono/node-server's bindings (`c.env`, which holds `incoming`); undefined otherwise, and for
 * in-process `app.request()` calls, which have no bindings.
 */
export function clientIdentity(bindings: unknown): string | undefined {
  if (typeof bindings !== 'object' || bindings === null || !('incoming' in bindings)) {
    return undefined
  }
  const { incoming } = bindings
  if (!(incoming instanceof IncomingMessage) || !(incoming.socket instanceof TLSSocket)) {
    return undefined
  }
  const socket = incoming.socket
  // Only a certificate that chained to the client CA; with optional client certificates an
  // unverified one is still let through and must not be logged as if it were an identity.
  if (!socket.authorized) return undefined
  let identity = identities.get(socket)
  if (identity === undefined) {
    const cn = socket.getPeerCertificate().subject?.CN
    identity = typeof cn === 'string' && cn !== '' ? cn.slice(0, 128) : null
    identities.set(socket, identity)
  }
  return identity ?? undefined
}
