// GET/HEAD /v2/<name>/manifests/<reference>: everything goes through the manifest service, which
// inspects before it answers. HEAD carries exactly the headers a GET would (containerd trusts them).

import type { Context } from 'hono'
import { API_VERSION_VALUE, Header } from '../../oci/media-types.js'
import { formatReference, type Reference } from '../../oci/reference.js'
import type { ManifestService } from '../../inspection/manifests.js'
import type { Route } from '../../upstream/routing.js'
import type { Env } from '../context.js'

export async function manifestHandler(c: Context<Env>, manifests: ManifestService, route: Route, reference: Reference): Promise<Response> {
  const access = c.get('access')
  access.reference = formatReference(reference)
  const method = c.req.method === 'HEAD' ? 'HEAD' : 'GET'
  const answer = await manifests.get({ repo: route, reference, method, accept: c.req.header('accept') ?? null })
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
