// What the admin route files share: parameter and body validation, and the answers they give
// alike. A file of its own so that admin.ts can mount the other admin route files, which use these,
// without an import cycle.

import type { Context } from 'hono'
import { z } from 'zod'
import { CustomsError } from '../../errors.js'
import { isDigest, type Digest } from '../../oci/digest.js'
import { effectiveState, type QuarantineRecord, type RepoKey } from '../../state/store.js'
import type { Env } from '../context.js'

/** The largest request body an admin route reads. */
export const ADMIN_BODY_MAX_BYTES = 16 * 1024
/** The page size of GET /admin/v1/quarantine when no `limit` is given, and its maximum. */
export const QUARANTINE_PAGE_DEFAULT = 50
export const QUARANTINE_PAGE_MAX = 500

/** Upstream names as config allows them (schema.ts `upstreamName`). */
const UPSTREAM = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/
/** OCI repository names (distribution spec), bounded. */
export const REPOSITORY = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/

export const repository = z.string().max(255).regex(REPOSITORY, 'must be a repository name')

export function upstreamParam(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (!UPSTREAM.test(value)) {
    throw new CustomsError('NAME_INVALID', 'upstream must be an upstream name such as docker.io')
  }
  return value
}

export function limitParam(value: string | undefined): number {
  if (value === undefined) return QUARANTINE_PAGE_DEFAULT
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN
  if (!(limit >= 1 && limit <= QUARANTINE_PAGE_MAX)) {
    const message = `limit must be a whole number from 1 to ${QUARANTINE_PAGE_MAX}`
    throw new CustomsError('PAGINATION_NUMBER_INVALID', message)
  }
  return limit
}

/** The record with the state that holds at `now`: an expired release reads as detained. */
export function effective(record: QuarantineRecord, now: number): QuarantineRecord {
  return { ...record, state: effectiveState(record, now) }
}

export function noRecord(repo: RepoKey, digest: Digest): CustomsError {
  const message = `no pull of ${repo.upstream}/${repo.repository}@${digest} was refused`
  return new CustomsError('MANIFEST_UNKNOWN', message)
}

/** The record just written, read back. */
export function recordParams(upstream: string, digest: string): { upstream: string; digest: Digest } {
  if (!isDigest(digest)) {
    throw new CustomsError('DIGEST_INVALID', `${digest.slice(0, 80)} is not a digest`)
  }
  return { upstream: upstreamParam(upstream) as string, digest }
}

/** The request's JSON body, read up to `limit` bytes (ADMIN_BODY_MAX_BYTES by default). */
export async function jsonBody(c: Context<Env>, limit = ADMIN_BODY_MAX_BYTES): Promise<unknown> {
  const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') {
    const message = 'the body must be JSON (Content-Type: application/json)'
    throw new CustomsError('REQUEST_INVALID', message)
  }
  const text = await boundedText(c.req.raw, limit)
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw new CustomsError('REQUEST_INVALID', 'the body is not valid JSON')
  }
}

/** The request's body as text, read up to `limit` bytes (the console's forms too). */
export async function boundedText(req: Request, limit: number): Promise<string> {
  const tooLarge = (): CustomsError =>
    new CustomsError('REQUEST_INVALID', `the body is larger than ${limit} bytes`)
  const length = Number(req.headers.get('content-length') ?? '0')
  if (length > limit) throw tooLarge()
  if (req.body === null) return ''
  const reader = req.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > limit) {
      await reader.cancel().catch(() => undefined)
      throw tooLarge()
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export function invalidBody(error: z.ZodError): CustomsError {
  const problems = error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`)
  return new CustomsError('REQUEST_INVALID', `invalid body: ${problems.join('; ')}`)
}
