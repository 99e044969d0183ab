// Typed errors. Every failure that reaches a client is a CustomsError whose code maps, in the one
// table below, to an HTTP status and an OCI error code; http/oci-error.ts is the only renderer.

/** The OCI distribution error codes Customs produces (PROTOCOL §1.8). */
export type OciCode =
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'NAME_UNKNOWN'
  | 'NAME_INVALID'
  | 'TAG_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'RANGE_INVALID'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNAVAILABLE'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UNKNOWN'

interface CodeInfo {
  readonly status: number
  readonly oci: OciCode
}

/** The one table from error code to HTTP status. Our own codes render as a standard OCI code. */
export const ERROR_TABLE = Object.freeze({
  UNAUTHORIZED: { status: 401, oci: 'UNAUTHORIZED' },
  DENIED: { status: 403, oci: 'DENIED' },
  NAME_UNKNOWN: { status: 404, oci: 'NAME_UNKNOWN' },
  NAME_INVALID: { status: 400, oci: 'NAME_INVALID' },
  TAG_INVALID: { status: 400, oci: 'TAG_INVALID' },
  MANIFEST_UNKNOWN: { status: 404, oci: 'MANIFEST_UNKNOWN' },
  MANIFEST_INVALID: { status: 400, oci: 'MANIFEST_INVALID' },
  BLOB_UNKNOWN: { status: 404, oci: 'BLOB_UNKNOWN' },
  DIGEST_INVALID: { status: 400, oci: 'DIGEST_INVALID' },
  RANGE_INVALID: { status: 416, oci: 'RANGE_INVALID' },
  UNSUPPORTED: { status: 405, oci: 'UNSUPPORTED' },
  TOOMANYREQUESTS: { status: 429, oci: 'TOOMANYREQUESTS' },
  UNAVAILABLE: { status: 503, oci: 'UNAVAILABLE' },
  PAGINATION_NUMBER_INVALID: { status: 400, oci: 'PAGINATION_NUMBER_INVALID' },
  UNKNOWN: { status: 500, oci: 'UNKNOWN' },
  // Customs' own codes, for the cases the OCI set does not name precisely.
  /** The upstream answered something that is not a valid registry answer (bad JSON, a lie). */
  UPSTREAM_INVALID: { status: 502, oci: 'UNKNOWN' },
  /** The upstream is unreachable, failing, or its circuit breaker is open. */
  UPSTREAM_UNAVAILABLE: { status: 503, oci: 'UNAVAILABLE' },
  /** The upstream refused our credentials or has no such repository for us. */
  UPSTREAM_DENIED: { status: 404, oci: 'NAME_UNKNOWN' },
  /** The inspection could not finish; fail closed. */
  INSPECTION_FAILED: { status: 403, oci: 'DENIED' },
  /** A cache write ran out of space or failed on disk. */
  STORAGE_FAILED: { status: 503, oci: 'UNAVAILABLE' },
  /** State (Redis) is unreachable; fail closed. */
  STATE_UNAVAILABLE: { status: 503, oci: 'UNAVAILABLE' },
  /**
   * An admin request's body is not what the route takes: not JSON, too big, unknown or bad fields.
   * UNSUPPORTED is the OCI code the distribution spec gives to "an invalid set of parameters".
   */
  REQUEST_INVALID: { status: 400, oci: 'UNSUPPORTED' },
} as const satisfies Record<string, CodeInfo>)

export type ErrorCode = keyof typeof ERROR_TABLE

export interface CustomsErrorOptions {
  detail?: unknown
  cause?: unknown
  /** Extra response headers, such as Retry-After or WWW-Authenticate. */
  headers?: Record<string, string>
}

/** An error with a code from ERROR_TABLE; thrown anywhere, rendered once by http/oci-error.ts. */
export class CustomsError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C
  readonly detail: unknown
  readonly headers: Readonly<Record<string, string>>

  constructor(code: C, message: string, options: CustomsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CustomsError'
    this.code = code
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }

  get status(): number {
    return ERROR_TABLE[this.code].status
  }

  get ociCode(): OciCode {
    return ERROR_TABLE[this.code].oci
  }
}

export function isCustomsError(err: unknown, code?: ErrorCode): err is CustomsError {
  return err instanceof CustomsError && (code === undefined || err.code === code)
}
