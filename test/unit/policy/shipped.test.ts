// The shipped policy sets load, and decide a table of images as their README says they do.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadPolicies } from '../../../src/policy/load.js'
import { evaluate, type EvaluationInput } from '../../../src/policy/evaluate.js'
import type { SignatureFact } from '../../../src/verify/facts.js'

const D = `sha256:${'a'.repeat(64)}`
const image = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  kind: 'image' as const,
  created: new Date(Date.now() - 30 * 86_400_000).toISOString(),
  labels: {},
  platforms: ['linux/amd64'],
  layers: 2,
  size: 1000,
  user: '1000',
  annotations: {},
}

function signer(
  subject: string,
  issuer: string,
  extensions: SignatureFact['identity'] extends infer I
    ? I extends { extensions: infer E }
      ? E
      : never
    : never = {}
): SignatureFact {
  return {
    source: 'referrer',
    artifact: D as never,
    verified: true,
    kind: 'keyless',
    identity: { subject, issuer, extensions },
    tlog: true,
  }
}

function pull(
  upstream: string,
  repository: string,
  tag: string | undefined,
  signatures: SignatureFact[] = [],
  over: Partial<EvaluationInput['image']> = {}
): EvaluationInput {
  return {
    upstream,
    repository,
    ...(tag !== undefined ? { tag } : {}),
    digest: D,
    image: { ...image, ...over },
    verification: { signatures, attestations: [], notation: 0, discoveryErrors: [] },
  }
}

const GITHUB = 'https://token.actions.githubusercontent.com'
const KREL = signer(
  'krel-trust@k8s-releng-prod.iam.gserviceaccount.com',
  'https://accounts.google.com'
)
const ACME_RELEASE = signer(
  'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0',
  GITHUB,
  { buildTrigger: 'push' }
)

const cases: Array<[string, string, EvaluationInput, string]> = [
  [
    'default',
    'an unsigned public image is served, with a warning',
    pull('docker.io', 'library/alpine', '3.19'),
    'cleared-with-warnings',
  ],
  [
    'default',
    'a CI-signed image by a pinned tag is cleared',
    pull('ghcr.io', 'acme/app', 'v1', [ACME_RELEASE]),
    'cleared',
  ],
  [
    'default',
    'latest is only a warning',
    pull('ghcr.io', 'acme/app', 'latest', [ACME_RELEASE]),
    'cleared-with-warnings',
  ],
  [
    'examples',
    'an official image is allowed',
    pull('docker.io', 'library/alpine', '3.19'),
    'cleared',
  ],
  ['examples', 'latest is refused', pull('docker.io', 'library/alpine', 'latest'), 'detained'],
  [
    'examples',
    'an image no policy names is refused',
    pull('docker.io', 'someone/thing', '1.0'),
    'detained',
  ],
  [
    'examples',
    'a Kubernetes release image signed by krel is allowed',
    pull('registry.k8s.io', 'kube-apiserver', 'v1.31.0', [KREL]),
    'cleared',
  ],
  [
    'examples',
    'a Kubernetes image signed by anyone else is refused',
    pull('registry.k8s.io', 'kube-apiserver', 'v1.31.0', [
      signer('evil@example.com', 'https://accounts.google.com'),
    ]),
    'detained',
  ],
  [
    'examples',
    "acme's image signed by its release workflow is allowed",
    pull('ghcr.io', 'acme/app', 'v1.2.0', [ACME_RELEASE]),
    'cleared',
  ],
  [
    'examples',
    "acme's image from another repository's workflow is refused",
    pull('ghcr.io', 'acme/app', 'v1.2.0', [
      signer('https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1', GITHUB, {
        buildTrigger: 'push',
      }),
    ]),
    'detained',
  ],
  [
    'examples',
    "acme's image running as root is refused",
    pull('ghcr.io', 'acme/app', 'v1.2.0', [ACME_RELEASE], { user: '' }),
    'detained',
  ],
  [
    'examples',
    "acme's image by a branch tag is refused",
    pull('ghcr.io', 'acme/app', 'main', [ACME_RELEASE]),
    'detained',
  ],
]

describe('the shipped policy sets', () => {
  for (const set of ['default', 'examples']) {
    describe(`policies/${set}`, () => {
      for (const [which, what, input, expected] of cases.filter((c) => c[0] === set)) {
        it(`${what}: ${expected}`, async () => {
          const policies = await loadPolicies(`policies/${which}`, { keyNames: new Set() })
          assert.equal(evaluate(policies, input).outcome, expected)
        })
      }
    })
  }
})
