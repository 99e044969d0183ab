// Why a certificate could not be issued, or why the HTTPS listener would not start. The message
// is written for the operator (it names the file or the bad value); the code is for tests.

/** What went wrong, for callers that branch and tests that assert. */
export type TlsErrorCode =
  | 'HOSTS_INVALID'
  | 'NAME_INVALID'
  | 'DAYS_INVALID'
  | 'FILE_EXISTS'
  | 'CA_MISSING'
  | 'CA_INVALID'
  | 'CA_EXPIRED'
  | 'CERT_MISSING'
  | 'FILE_UNREADABLE'
  | 'CERT_INVALID'
  | 'KEY_INVALID'
  | 'KEY_MISMATCH'
  | 'CERT_EXPIRED'
  | 'CERT_NOT_YET_VALID'
  | 'CLIENT_CA_INVALID'

/** A refusal with a message fit to print as it is, without a stack trace. */
export class TlsError extends Error {
  readonly code: TlsErrorCode
  /**
   * One message per unusable part of a setting (a listener's certificate and its client CA, say),
   * so `config check` can list each; the message is these, one a line.
   */
  readonly problems: readonly string[]

  constructor(code: TlsErrorCode, message: string, options?: { cause?: unknown; problems?: readonly string[] }) {
    super(message, options)
    this.name = 'TlsError'
    this.code = code
    this.problems = options?.problems ?? [message]
  }
}
