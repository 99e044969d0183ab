// What the admin-API tests share: tokens are configured by their SHA-256 (config `admin.tokens`,
// `access.clients`), and most tests need one image detained for a plain reason: acme/** images
// are built without a user, so they run as root and this enforcing policy refuses them.

import { createHash } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startCustoms, upstreamConfig, type CustomsHandle } from './customs.js'
import { ociImage, putImage, startFakeUpstream, type FakeUpstream } from './fake-upstream.js'
import { makeTempDir } from './processes.js'

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

/** An admin token as config names it, with the secret a test presents. */
export interface TestToken {
  readonly name: string
  readonly secret: string
  readonly role: 'viewer' | 'approver' | 'admin'
}

/** A fake upstream, and Customs in front of it with one policy file and admin tokens. */
export interface PolicyCustoms {
  readonly upstream: FakeUpstream
  readonly customs: CustomsHandle
  /** The folder holding the policy file, for a second Customs with the same policy. */
  readonly policyDir: string
  stop(): Promise<void>
}

/**
 * Starts a fake upstream holding each image at tag v1 and Customs in front of it, with `policy`
 * (the acme non-root one by default) as its only policy file, `tokens` as `admin.tokens`, and
 * `config` appended to its configuration.
 */
export async function startWithPolicy(options: {
  readonly images: ReadonlyArray<readonly [string, ReturnType<typeof ociImage>]>
  readonly tokens: readonly TestToken[]
  readonly policy?: string
  readonly config?: string
}): Promise<PolicyCustoms> {
  const upstream = await startFakeUpstream()
  for (const [repository, image] of options.images) putImage(upstream, repository, image, 'v1')
  const work = await makeTempDir('policy-customs-')
  const policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'policy.yaml'), options.policy ?? ACME_NON_ROOT_POLICY)
  const tokens = options.tokens.map((t) => `    - { name: ${t.name}, sha256: "${sha256hex(t.secret)}", role: ${t.role} }`)
  const customs = await startCustoms({
    config: [
      upstreamConfig('docker.io', upstream.url),
      `policy: { path: "${policyDir}", watch: false }`,
      'admin:',
      '  tokens:',
      ...tokens,
      options.config ?? '',
    ].join('\n'),
  })
  return {
    upstream,
    customs,
    policyDir,
    async stop() {
      await customs.stop()
      await upstream.close()
      await rm(work, { recursive: true, force: true })
    },
  }
}
