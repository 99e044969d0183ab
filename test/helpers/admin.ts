// What the admin-API tests share: tokens are configured by their SHA-256 (config `admin.tokens`,
// `access.clients`), and most tests need one image detained for a plain reason: acme/** images
// are built without a user, so they run as root and this enforcing policy refuses them.

import { createHash } from 'node:crypto'

/** The hex SHA-256 of a token, as config takes it. */
export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex')

/** An enforcing policy that detains every acme/** image running as root. */
export const ACME_NON_ROOT_POLICY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: must-be-non-root }
spec:
  mode: enforce
  match: [{ repository: "acme/**" }]
  rules:
    nonRoot: true
`
