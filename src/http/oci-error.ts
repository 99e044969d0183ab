// The one renderer of errors: a CustomsError becomes its mapped status and an OCI error body
// (PROTOCOL §1.8); anything else is logged once and becomes 500 UNKNOWN, never a crash.

import type { Context } from 'hono'
import { CustomsError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import { API_VERSION_VALUE, Header } from '../oci/media-types.js'

export function errorResponse(err: CustomsError, method: string): Response {
  const body = JSON.stringify({
    errors: [{ code: err.ociCode, message: err.message, ...(err.detail !== undefined ? { detail: err.detail } : {}) }],
  })
  const headers = new Headers({
    'Content-Type': 'application/json',
    [Header.API_VERSION]: API_VERSION_VALUE,
    ...err.headers,
  })
  if (method === 'HEAD') {
    headers.set('Content-Length', String(Buffer.byteLength(body)))
    return new Response(null, { status: err.status, headers })
  }
  return new Response(body, { status: err.status, headers })
}

export function onError(logger: Logger) {
  return function ociError(err: Error, c: Context): Response {
    if (err instanceof CustomsError) {
      c.set('errorCode', err.code)
      return errorResponse(err, c.req.method)
    }
    logger.error({ err, method: c.req.method, path: c.req.path }, 'failed to answer request')
    return errorResponse(new CustomsError('UNKNOWN', 'internal error'), c.req.method)
  }
}
