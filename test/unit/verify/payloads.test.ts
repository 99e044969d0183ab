// What a signature says it signs: simple-signing and in-toto binding to the inspected digest,
// and the predicate facts read from verified statements.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Digest } from '../../../src/oci/digest.js'
import { parseStatement, predicateFacts, simpleSigningMismatch } from '../../../src/verify/payloads.js'
import { anchored, identityMismatch, type CertificateIdentity } from '../../../src/verify/identity.js'

const D = `sha256:${'a'.repeat(64)}` as Digest
const OTHER = `sha256:${'b'.repeat(64)}` as Digest

function simple(digest: string, type = 'cosign container image signature'): Buffer {
  return Buffer.from(
    JSON.stringify({ critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': digest }, type }, optional: null })
  )
}

describe('simpleSigningMismatch', () => {
  it('returns undefined when the payload names the digest', () => {
    assert.equal(simpleSigningMismatch(simple(D), D), undefined)
  })
  it('returns a reason when the payload names another digest', () => {
    assert.match(simpleSigningMismatch(simple(OTHER), D) ?? '', /not sha256:a/)
  })
  it('returns a reason for another payload type, non-JSON and non-objects', () => {
    assert.ok(simpleSigningMismatch(simple(D, 'something else'), D))
    assert.ok(simpleSigningMismatch(Buffer.from('nope'), D))
    assert.ok(simpleSigningMismatch(Buffer.from('[1]'), D))
    assert.ok(simpleSigningMismatch(Buffer.from('{"critical":null}'), D))
  })
})

describe('parseStatement', () => {
  const statement = (subjectHex: string, extra: object = {}) =>
    Buffer.from(
      JSON.stringify({
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: 'x', digest: { sha256: subjectHex } }],
        predicateType: 'https://slsa.dev/provenance/v1',
        predicate: {},
        ...extra,
      })
    )
  it('returns the predicate when a subject is the digest', () => {
    const s = parseStatement(statement('a'.repeat(64)), D)
    assert.equal(typeof s, 'object')
  })
  it('returns a reason when no subject is the digest', () => {
    assert.equal(typeof parseStatement(statement('b'.repeat(64)), D), 'string')
  })
  it('returns a reason for a wrong _type or a missing predicateType', () => {
    assert.equal(typeof parseStatement(statement('a'.repeat(64), { _type: 'x' }), D), 'string')
    assert.equal(typeof parseStatement(statement('a'.repeat(64), { predicateType: 1 }), D), 'string')
  })
})

describe('predicateFacts', () => {
  it('returns the SLSA v1 builder id and source', () => {
    const facts = predicateFacts({
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: {
        runDetails: { builder: { id: 'https://github.com/actions/runner' } },
        buildDefinition: { resolvedDependencies: [{ uri: 'git+https://github.com/acme/app@refs/tags/v1' }] },
      },
    })
    assert.deepEqual(facts.slsa, { builderId: 'https://github.com/actions/runner', sourceUri: 'git+https://github.com/acme/app@refs/tags/v1' })
  })
  it('returns the SLSA v0.2 builder id and config source', () => {
    const facts = predicateFacts({
      predicateType: 'https://slsa.dev/provenance/v0.2',
      predicate: { builder: { id: 'b' }, invocation: { configSource: { uri: 's' } } },
    })
    assert.deepEqual(facts.slsa, { builderId: 'b', sourceUri: 's' })
  })
  it('returns the SBOM format', () => {
    assert.deepEqual(predicateFacts({ predicateType: 'https://spdx.dev/Document', predicate: {} }).sbom, { format: 'spdx' })
    assert.deepEqual(predicateFacts({ predicateType: 'https://cyclonedx.org/bom', predicate: {} }).sbom, { format: 'cyclonedx' })
  })
  it('returns the vulnerability scan time and result', () => {
    const facts = predicateFacts({
      predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
      predicate: {
        scanner: { uri: 'trivy', result: { Results: [{ Vulnerabilities: [{ VulnerabilityID: 'CVE-2024-1', Severity: 'HIGH' }] }] } },
        metadata: { scanFinishedOn: '2026-11-01T00:00:00Z' },
      },
    })
    assert.deepEqual(facts.vulnerabilities, {
      scanner: 'trivy',
      finishedOn: '2026-11-01T00:00:00Z',
      findings: [{ id: 'CVE-2024-1', severity: 'high' }],
    })
  })
  it('reads Grype findings too', () => {
    const facts = predicateFacts({
      predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
      predicate: { scanner: { result: { matches: [{ vulnerability: { id: 'GHSA-x', severity: 'Critical' } }] } } },
    })
    assert.deepEqual(facts.vulnerabilities?.findings, [{ id: 'GHSA-x', severity: 'critical' }])
  })
  it('returns nothing for an unknown predicate type or a non-object predicate', () => {
    assert.deepEqual(predicateFacts({ predicateType: 'x', predicate: 1 }), {})
  })
})

describe('identityMismatch', () => {
  const id: CertificateIdentity = {
    subject: 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1',
    issuer: 'https://token.actions.githubusercontent.com',
    extensions: { sourceRepositoryUri: 'https://github.com/acme/app' },
  }
  const issuer = 'https://token.actions.githubusercontent.com'
  it('returns undefined for an exact subject and issuer', () => {
    assert.equal(identityMismatch(id, { issuer, subject: id.subject }), undefined)
  })
  it('anchors regexes: a pattern that only occurs inside the subject does not match', () => {
    assert.ok(identityMismatch(id, { issuer, subjectRegExp: 'acme' }))
    assert.ok(identityMismatch(id, { issuer, subjectRegExp: 'https://github\\.com/acme/' }))
    assert.equal(identityMismatch(id, { issuer, subjectRegExp: 'https://github\\.com/acme/app/.*' }), undefined)
  })
  it('anchors alternations as a whole', () => {
    assert.equal(anchored('a|b').test('xa'), false)
    assert.equal(anchored('a|b').test('b'), true)
  })
  it('returns a reason for a wrong issuer or extension', () => {
    assert.ok(identityMismatch(id, { issuer: 'https://accounts.google.com', subject: id.subject }))
    assert.ok(identityMismatch(id, { issuer, extensions: { sourceRepositoryUri: 'https://github.com/evil/app' } }))
    assert.equal(identityMismatch(id, { issuer, extensions: { sourceRepositoryUri: 'https://github.com/acme/app' } }), undefined)
  })
})
