// Bearer tokens for the admin API: the presented token is hashed and compared, in constant time,
// with every configured hash (config `admin.tokens`); the match's role is kept for requireRole.
// Failures are CustomsErrors, rendered by the one OCI error renderer.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import { ADMIN_ROLES, type AdminRole } from '../../config/schema.js'
import { CustomsError } from '../../errors.js'
import type { Env } from '../context.js'

/** One configured admin token: its holder's name, the hex SHA-256 of the token, and its role. */
export interface AdminToken {
  readonly name: string
  readonly sha256: string
  readonly role: AdminRole
}

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="customs-admin"' }

function unauthorized(message: string): CustomsError {
  return new CustomsError('UNAUTHORIZED', message, { headers: CHALLENGE })
}

/** Accepts a request only with `Authorization: Bearer <token>` of a configured token. */
export function adminAuth(tokens: readonly AdminToken[]): MiddlewareHandler<Env> {
  const known = tokens.map((t) => ({
    name: t.name,
    role: t.role,
    hash: Buffer.from(t.sha256, 'hex'),
  }))
  return async function adminAuthenticate(c, next) {
    if (known.length === 0) {
      throw unauthorized('the admin API is disabled: no admin.tokens are configured')
    }
    const header = c.req.header('authorization')
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
    if (match === null) throw unauthorized('an admin bearer token is required')
    const presented = createHash('sha256').update(match[1] as string).digest()
    // Every hash is compared, whichever matches: the time taken says nothing about which did.
    let found: (typeof known)[number] | undefined
    for (const token of known) {
      if (timingSafeEqual(presented, token.hash) && found === undefined) found = token
    }
    if (found === undefined) throw unauthorized('the admin bearer token is not valid')
    c.set('admin', { name: found.name, role: found.role })
    await next()
  }
}

/** Lets through only requests whose admin token has `role` or a greater one. */
export function requireRole(role: AdminRole): MiddlewareHandler<Env> {
  const needed = ADMIN_ROLES.indexOf(role)
  return async function adminRole(c, next) {
    const admin = c.get('admin')
    if (ADMIN_ROLES.indexOf(admin.role) < needed) {
      const message = `this admin request needs the ${role} role; ${admin.name} has ${admin.role}`
      throw new CustomsError('DENIED', message)
    }
    await next()
  }
}
