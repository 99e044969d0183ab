// Who may use the pull API (config `access`). Anonymous by default, as mirrors are used. With
// clients configured, a request may name itself with HTTP Basic credentials, which are then
// checked and kept as the request's identity; with `anonymous: false` it must. Basic is what
// every client sends to a registry that challenges with it (Docker, containerd, podman, skopeo),
// so no token endpoint is needed. Failures are CustomsErrors, rendered by the one OCI renderer.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import { CustomsError } from '../../errors.js'
import type { Env } from '../context.js'

/** One configured pull client: its name (the Basic user name) and the hex SHA-256 of its secret. */
export interface PullClient {
  readonly name: string
  readonly sha256: string
}

export interface PullAccess {
  readonly anonymous: boolean
  readonly clients: readonly PullClient[]
}

/** The challenge clients answer with Basic credentials (distribution's realm form). */
export const PULL_CHALLENGE = 'Basic realm="customs"'

/** Longer Authorization headers are refused unread: a name and a secret fit well within this. */
const AUTHORIZATION_MAX = 1024

function unauthorized(message: string): CustomsError {
  return new CustomsError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': PULL_CHALLENGE } })
}

const sha256 = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest()

/**
 * The middleware for /v2: sets `pullClient` for accepted credentials, refuses wrong ones (401 with
 * the challenge, one message whichever part was wrong), and refuses requests without credentials
 * unless anonymous pulls are allowed. Without any clients configured it is not installed at all.
 */
export function pullAuth(access: PullAccess): MiddlewareHandler<Env> {
  const known = access.clients.map((c) => ({ name: c.name, nameHash: sha256(c.name), hash: Buffer.from(c.sha256, 'hex') }))
  return async function pullAuthenticate(c, next) {
    const header = c.req.header('authorization')
    // Anonymous mode ignores other schemes: a client holding a token for someone else is not ours
    // to judge. Required mode needs Basic.
    const basic = header === undefined ? null : /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header)
    if (basic === null || header === undefined) {
      if (!access.anonymous) throw unauthorized('credentials are required to pull through Customs')
      return next()
    }
    if (header.length > AUTHORIZATION_MAX) throw unauthorized('the credentials are not valid')
    const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    const name = colon < 0 ? decoded : decoded.slice(0, colon)
    const secret = colon < 0 ? '' : decoded.slice(colon + 1)
    const presentedName = sha256(name)
    const presentedSecret = sha256(secret)
    // Every client is compared on both parts, whatever matches: the time taken says neither which
    // client nor which part was wrong. Wrong credentials are refused even when anonymous pulls
    // are allowed, so a misconfigured node shows up instead of silently pulling unnamed.
    let found: string | undefined
    for (const client of known) {
      const nameOk = timingSafeEqual(presentedName, client.nameHash)
      const secretOk = timingSafeEqual(presentedSecret, client.hash)
      if (nameOk && secretOk && found === undefined) found = client.name
    }
    if (found === undefined) throw unauthorized('the credentials are not valid')
    c.set('pullClient', found)
    return next()
  }
}
