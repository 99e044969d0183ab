// The typed variables handlers and middleware share through hono's context.

import type { AdminRole } from '../config/schema.js'
import type { ErrorCode } from '../errors.js'

export interface AccessFields {
  upstream?: string
  repository?: string
  reference?: string
  digest?: string
  cache?: string
  stale?: string
  bytes?: number
}

export type Env = {
  Variables: {
    requestId: string
    access: AccessFields
    errorCode: ErrorCode
    /** The admin token a request to /admin/ presented, once the admin middleware accepted it. */
    admin: { readonly name: string; readonly role: AdminRole }
    /** The access.clients name a pull request authenticated as (HTTP Basic), when it did. */
    pullClient: string
    /**
     * Called by a handler that streams a body: the access line is then written when the stream
     * ends, through the function returned, with the bytes really sent.
     */
    deferAccessLog: () => (bytes: number, aborted: boolean) => void
    /**
     * The status of an answer a handler wrote to node's response itself (hono then only sees its
     * placeholder, whose status is 200).
     */
    sentStatus: number
  }
}
