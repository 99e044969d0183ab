// GET/HEAD /v2/<name>/manifests/<reference>: everything goes through the manifest service, which
// inspects before it answers. HEAD carries exactly the headers a GET would (containerd trusts them).

import type { Context } from 'hono'
import { API_VERSION_VALUE, Header } from '../../oci/media-types.js'
import { formatReference, type Reference } from '../../oci/reference.js'
import type { ManifestService } from '../../inspection/manifests.js'
import type { QuarantineClient } from '../../state/store.js'
import { clientAddress, clientIdentity } from '../../tls/identity.js'
import type { Route } from '../../upstream/routing.js'
import type { Env } from '../context.js'

export async function manifestHandler(c: Context<Env>, manifests: ManifestService, route: Route, reference: Reference): Promise<Response> {
  const access = c.get('access')
  access.reference = formatReference(reference)
  const method = c.req.method === 'HEAD' ? 'HEAD' : 'GET'
  const accept = c.req.header('accept') ?? null
  const client = requestClient(c)
  const answer = await manifests.get({ repo: route, reference, method, accept, client })
  access.digest = answer.digest
  const headers: Record<string, string> = {
    'Content-Type': answer.mediaType,
    'Content-Length': String(answer.size),
    [Header.CONTENT_DIGEST]: answer.digest,
    [Header.API_VERSION]: API_VERSION_VALUE,
    ETag: `"${answer.digest}"`,
  }
  if (route.namespace !== undefined) headers[Header.OCI_NAMESPACE] = route.namespace
  if (answer.verdict !== 'cleared') headers[Header.CUSTOMS_VERDICT] = answer.verdict
  if (answer.stale !== undefined) {
    access.stale = answer.stale
    headers[Header.CUSTOMS_STALE] = answer.stale
    headers.Warning = '110 customs "Response is Stale"'
  }
  return new Response(method === 'HEAD' ? null : (answer.bytes ?? null), { status: 200, headers })
}

/**
 * Who asks, for the quarantine record of a refused pull and the decision event: address, user
 * agent, identity. The identity is the access.clients name the request authenticated as, else the
 * CN of its verified mTLS certificate: credentials name who pulls, a certificate names a machine,
 * and the access log keeps both (`user`, `client`) for a request that has both.
 */
function requestClient(c: Context<Env>): QuarantineClient {
  const address = clientAddress(c.env)
  const userAgent = c.req.header('user-agent')?.slice(0, USER_AGENT_MAX)
  const identity = c.get('pullClient') ?? clientIdentity(c.env)
  // Members set one by one: V8 builds an object of spreads alone on a slow path, every pull.
  const client: { -readonly [K in keyof QuarantineClient]: QuarantineClient[K] } = {}
  if (address !== undefined) client.address = address
  if (userAgent !== undefined) client.userAgent = userAgent
  if (identity !== undefined) client.identity = identity
  return client
}

/** User agents are kept to this many characters (as in the access log). */
const USER_AGENT_MAX = 200
