// Tag moves, from recorded facts: what changed of the signers between the previous digest and the
// new one, which policies make a change a detention (and the `tagMoves` knob as the loader reads
// and lints it), and the denial's wording.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { classifyTagMove, detainingPolicies, signersOf, tagMoveReason } from '../../../src/inspection/tag-moves.js'
import { digestOf } from '../../../src/oci/digest.js'
import { NO_FACTS, type SignatureFact, type VerificationFacts } from '../../../src/verify/facts.js'
import { issuesOf, load, only, policyDoc } from '../policy/helpers.js'

const ARTIFACT = digestOf(Buffer.from('signature manifest'))
const keyed = (key: string, verified = true): SignatureFact => ({ source: 'legacy-sig', artifact: ARTIFACT, verified, kind: 'keyed', key, ...(verified ? {} : { reason: 'bad signature' }) })
const keyless = (subject: string, issuer = 'https://token.actions.githubusercontent.com'): SignatureFact => ({
  source: 'referrer',
  artifact: ARTIFACT,
  verified: true,
  kind: 'keyless',
  identity: { subject, issuer, extensions: {} },
})
const facts = (...signatures: SignatureFact[]): VerificationFacts => ({ ...NO_FACTS, signatures })
const CI = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1'
const OTHER = 'https://github.com/mallory/app/.github/workflows/release.yml@refs/heads/main'

describe('signersOf', () => {
  it('names verified signatures only, keyed by key name and keyless by subject and issuer, sorted and distinct', () => {
    assert.deepEqual(signersOf(facts(keyed('release'), keyed('unverified', false), keyless(CI), keyed('release'))), [
      `${CI} (https://token.actions.githubusercontent.com)`,
      'key:release',
    ])
    assert.deepEqual(signersOf(undefined), [])
  })
})

describe('classifyTagMove', () => {
  const cases: Array<[string, VerificationFacts | undefined, VerificationFacts | undefined, string]> = [
    ['the same signer', facts(keyed('release')), facts(keyed('release')), 'none'],
    ['another key', facts(keyed('release')), facts(keyed('mallory')), 'signer-changed'],
    ['another keyless identity', facts(keyless(CI)), facts(keyless(OTHER)), 'signer-changed'],
    ['the same subject from another issuer', facts(keyless(CI)), facts(keyless(CI, 'https://evil.example')), 'signer-changed'],
    ['one of two signers dropped', facts(keyed('release'), keyless(CI)), facts(keyless(CI)), 'signer-changed'],
    ['a signer added', facts(keyed('release')), facts(keyed('release'), keyless(CI)), 'none'],
    ['a signature lost', facts(keyed('release')), facts(), 'signature-lost'],
    ['a signature that no longer verifies', facts(keyed('release')), facts(keyed('release', false)), 'signature-lost'],
    ['unsigned to unsigned', facts(), facts(), 'none'],
    ['unsigned to signed', facts(), facts(keyed('release')), 'none'],
    ['no facts recorded for the previous digest', undefined, facts(keyed('release')), 'none'],
  ]
  for (const [what, previous, next, change] of cases) {
    it(`is ${change} for ${what}`, () => {
      assert.equal(classifyTagMove(previous, next).change, change)
    })
  }
  it('returns both signer lists', () => {
    assert.deepEqual(classifyTagMove(facts(keyed('release')), facts(keyed('mallory'))), {
      change: 'signer-changed',
      previousSigners: ['key:release'],
      newSigners: ['key:mallory'],
    })
  })
})

describe('the tagMoves policy knob', () => {
  const REPO = { upstream: 'docker.io', repository: 'acme/app' }
  const set = load({
    'a.yaml': policyDoc('pinned', 'match: [{ repository: "acme/**" }]\ntagMoves: { signerChange: detain }\nrules: { nonRoot: true }'),
    'b.yaml': policyDoc('only-stable', 'match: [{ repository: "acme/app", tags: ["v*"] }]\ntagMoves: { signerChange: detain }\nrules: { nonRoot: true }'),
    'c.yaml': policyDoc('flagged', 'match: [{ repository: "**" }]\ntagMoves: { signerChange: flag }\nrules: { nonRoot: true }'),
    'd.yaml': policyDoc('default', 'match: [{ repository: "**" }]\nrules: { nonRoot: true }'),
  })

  it('is compiled, flag when absent', () => {
    assert.deepEqual(
      set.policies.map((p) => [p.name, p.tagMoves?.signerChange ?? 'flag']),
      [['pinned', 'detain'], ['only-stable', 'detain'], ['flagged', 'flag'], ['default', 'flag']]
    )
  })

  it('detains by every enforcing policy that matches the tag', () => {
    assert.deepEqual(detainingPolicies(set, REPO, 'v2'), ['pinned', 'only-stable'])
    assert.deepEqual(detainingPolicies(set, REPO, 'latest'), ['pinned'])
    assert.deepEqual(detainingPolicies(set, { upstream: 'docker.io', repository: 'other/app' }, 'v2'), [])
  })

  it('does not detain under an audit policy, and lint says so at the knob', () => {
    const audit = load(policyDoc('watch', 'mode: audit\nmatch: [{ repository: "**" }]\ntagMoves:\n  signerChange: detain\nrules: { nonRoot: true }'))
    assert.deepEqual(detainingPolicies(audit, REPO, 'v2'), [])
    const [warning] = audit.warnings ?? []
    assert.equal(warning?.code, 'AUDIT_TAG_MOVES')
    assert.equal(warning?.path, 'spec.tagMoves.signerChange')
    assert.equal(warning?.line, 8)
  })

  it('refuses an unknown value or key, positioned', () => {
    const bad = issuesOf(policyDoc('p', 'match: [{ repository: "**" }]\ntagMoves:\n  signerChange: deny\n'))
    assert.equal(only(bad, 'INVALID', 'spec.tagMoves.signerChange').line, 7)
    const extra = issuesOf(policyDoc('p', 'match: [{ repository: "**" }]\ntagMoves: { signerChange: flag, digestChange: detain }\n'))
    assert.ok(extra.some((i) => i.path.startsWith('spec.tagMoves') && i.line === 6), JSON.stringify(extra))
  })
})

describe('tagMoveReason', () => {
  it('names the tag, both digests, both identities and the policy', () => {
    const from = digestOf(Buffer.from('old'))
    const to = digestOf(Buffer.from('new'))
    const repo = { upstream: 'docker.io', repository: 'acme/app' }
    const reason = tagMoveReason(repo, 'v1', from, to, classifyTagMove(facts(keyed('release')), facts(keyed('mallory'))), ['pinned'])
    assert.equal(
      reason,
      `tag docker.io/acme/app:v1 moved from ${from} (signed by key:release) to ${to} (signed by key:mallory): ` +
        "the signer changed; policy 'pinned' detains such moves (tagMoves.signerChange: detain) until the new digest is released"
    )
    const lost = tagMoveReason(repo, 'v1', from, to, classifyTagMove(facts(keyed('release')), facts()), ['pinned'])
    assert.match(lost, /\(signed by key:release\) to sha256:[0-9a-f]{64} \(unsigned\): the signature was lost/)
  })
})
