// A policy file's vulnerability conditions load and decide: scan age, severity threshold and
// the CVE allowlist.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parsePolicyDocuments, PolicyError } from '../../../src/policy/load.js'
import { evaluate } from '../../../src/policy/evaluate.js'

const TYPE = 'https://cosign.sigstore.dev/attestation/vuln/v1'
const doc = (vuln: string) => `apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: scanned }
spec:
  match: [{ repository: "**" }]
  attestations:
    - name: scan
      predicateType: ${TYPE}
      vulnerabilities: ${vuln}
`

function decide(vuln: string, findings: Array<{ id: string; severity: string }>, finishedAgoMs = 3_600_000): string {
  const set = parsePolicyDocuments([{ path: 'p.yaml', text: doc(vuln) }], { keyNames: new Set() })
  return evaluate(set, {
    upstream: 'docker.io',
    repository: 'acme/app',
    digest: `sha256:${'a'.repeat(64)}`,
    image: { mediaType: 'x', kind: 'image', labels: {}, platforms: [], annotations: {} },
    verification: {
      signatures: [],
      notation: 0,
      discoveryErrors: [],
      attestations: [
        {
          source: 'referrer',
          artifact: `sha256:${'b'.repeat(64)}` as never,
          verified: true,
          predicateType: TYPE,
          predicate: { vulnerabilities: { finishedOn: new Date(Date.now() - finishedAgoMs).toISOString(), findings } },
        },
      ],
    },
  }).outcome
}

describe('vulnerability conditions in a policy file', () => {
  it('clear a fresh scan with no finding at or above the threshold', () => {
    assert.equal(decide('{ maxAge: 7d, failOn: high }', [{ id: 'CVE-1', severity: 'low' }]), 'cleared')
  })
  it('detain a critical finding unless allowlisted', () => {
    assert.equal(decide('{ failOn: high }', [{ id: 'CVE-9', severity: 'critical' }]), 'detained')
    assert.equal(decide('{ failOn: high, allow: [CVE-9] }', [{ id: 'CVE-9', severity: 'critical' }]), 'cleared')
  })
  it('detain a scan older than maxAge', () => {
    assert.equal(decide('{ maxAge: 1d }', [], 3 * 86_400_000), 'detained')
  })
  it('refuse an unknown severity name at load, positioned', () => {
    assert.throws(() => decide('{ failOn: severe }', []), (e: unknown) => e instanceof PolicyError && e.issues[0]?.line === 9 && e.issues[0]?.path.endsWith('failOn') === true)
  })
})
