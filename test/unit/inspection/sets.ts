// Policy sets the inspection tests judge root images by: images that set no user run as root,
// which NON_ROOT refuses and ANY allows. Both cover acme/** on every upstream.

import { parsePolicyDocuments } from '../../../src/policy/load.js'
import type { PolicySet } from '../../../src/policy/types.js'

/** A set of one document, named after `name`, with no keys. */
export const policySet = (name: string, text: string): PolicySet =>
  parsePolicyDocuments([{ path: `${name}.yaml`, text }], { keyNames: new Set() })

export const NON_ROOT = policySet('non-root', `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-non-root }
spec:
  mode: enforce
  match: [{ repository: "acme/**" }]
  rules: { nonRoot: true }
`)

export const ANY = policySet('any', `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-any }
spec:
  mode: enforce
  match: [{ repository: "acme/**" }]
  rules: {}
`)
