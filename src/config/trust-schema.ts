// The `trust` section: Sigstore trusted roots with their thresholds, named public keys, where
// signatures live when not beside the image, and how discovery behaves. Verification needs no
// network: a root is a trusted_root.json file, or the public Sigstore root shipped with
// @sigstore/tuf, refreshed only by an explicit operation.

import { z } from 'zod'
import { parseDuration } from './units.js'

const name = z.string().regex(/^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/, 'must be a lowercase name such as acme-release')

const threshold = z.number().int().min(0).max(10)

const root = z.strictObject({
  name,
  /** A trusted_root.json; absent means the public Sigstore root bundled with @sigstore/tuf. */
  trustedRoot: z.string().min(1).optional(),
  tlogThreshold: threshold.default(1),
  /** 1 for the public Sigstore; 0 for private roots and test roots without a CT log. */
  ctlogThreshold: threshold.default(1),
  timestampThreshold: threshold.default(1),
})

const key = z
  .strictObject({
    name,
    /** PEM public key inline, or a file holding one. */
    pem: z.string().min(1).optional(),
    file: z.string().min(1).optional(),
  })
  .refine((k) => (k.pem === undefined) !== (k.file === undefined), { message: 'set exactly one of pem or file' })

const signatureRepository = z.strictObject({
  /** The upstream name this applies to. */
  upstream: z.string().min(1),
  /** A repository glob (`kong/*`, `org/**`). */
  repository: z.string().min(1),
  /** Where the signatures of matching images live (cosign's COSIGN_REPOSITORY). */
  signatures: z.string().min(1),
})

const negativeTtl = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseDuration(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

export const trustSchema = z
  .strictObject({
    roots: z.array(root).prefault([{ name: 'sigstore-public' }]),
    keys: z.array(key).default([]),
    signatureRepositories: z.array(signatureRepository).default([]),
    discovery: z
      .strictObject({
        /** Look for attestations (`.att` tags and attestation bundles) as well as signatures. */
        attestations: z.boolean().default(true),
        /** How long "no signature found" is believed before the upstream is asked again. */
        negativeTtl: negativeTtl.prefault('5m'),
        /** At most this many signature and attestation artifacts are examined per digest. */
        maxArtifacts: z.number().int().min(1).max(100).default(16),
      })
      .prefault({}),
  })
  .superRefine((trust, ctx) => {
    const names = new Set<string>()
    for (const [i, r] of trust.roots.entries()) {
      if (names.has(r.name)) ctx.addIssue({ code: 'custom', path: ['roots', i, 'name'], message: `${r.name} is named twice` })
      names.add(r.name)
    }
    for (const [i, k] of trust.keys.entries()) {
      if (names.has(k.name)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'name'], message: `${k.name} is named twice` })
      names.add(k.name)
    }
  })

export type TrustConfig = z.output<typeof trustSchema>
