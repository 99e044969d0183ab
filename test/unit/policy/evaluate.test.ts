// Policy evaluation over facts: matching (AND across policies, OR or k-of-n across authorities),
// every rule's pass and fail, modes, exceptions and their expiry, the unmatched default.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import picomatch from 'picomatch'
import { evaluate, type EvaluationInput } from '../../../src/policy/evaluate.js'
import type {
  CompiledPolicy,
  PolicySet,
  CompiledException,
  CompiledRules,
} from '../../../src/policy/types.js'
import type { SignatureFact, VerificationFacts } from '../../../src/verify/facts.js'

const D = `sha256:${'a'.repeat(64)}`
const ISSUER = 'https://token.actions.githubusercontent.com'
const SUBJECT = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1'
const NOW = Date.parse('2026-11-29T00:00:00Z')

function policy(over: Partial<CompiledPolicy> = {}): CompiledPolicy {
  return {
    name: 'p',
    source: 'test.yaml:1',
    mode: 'enforce',
    onVerifierUnavailable: 'deny',
    match: [{ repository: picomatch('**') }],
    authorities: [],
    authoritiesRequired: 1,
    attestations: [],
    rules: {},
    ...over,
  }
}

function set(policies: CompiledPolicy[], extra: Partial<PolicySet> = {}): PolicySet {
  return { policies, exceptions: [], unmatched: 'allow', revision: 'r', ...extra }
}

const keyless: SignatureFact = {
  source: 'legacy-sig',
  artifact: D as never,
  verified: true,
  kind: 'keyless',
  identity: {
    subject: SUBJECT,
    issuer: ISSUER,
    extensions: { sourceRepositoryUri: 'https://github.com/acme/app' },
  },
  tlog: true,
}
const keyed: SignatureFact = {
  source: 'legacy-sig',
  artifact: D as never,
  verified: true,
  kind: 'keyed',
  key: 'release',
  tlog: false,
}

function facts(
  signatures: SignatureFact[] = [],
  extra: Partial<VerificationFacts> = {}
): VerificationFacts {
  return { signatures, attestations: [], notation: 0, discoveryErrors: [], ...extra }
}

function input(over: Partial<EvaluationInput> = {}): EvaluationInput {
  return {
    upstream: 'docker.io',
    repository: 'acme/app',
    digest: D,
    image: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      kind: 'image',
      created: '2026-11-01T00:00:00Z',
      labels: { 'org.opencontainers.image.source': 'https://github.com/acme/app' },
      platforms: ['linux/amd64'],
      layers: 3,
      size: 1000,
      user: '1000',
      annotations: {},
    },
    verification: facts(),
    ...over,
  }
}

function rulesPolicy(rules: CompiledRules): PolicySet {
  return set([policy({ rules })])
}

describe('evaluate', () => {
  describe('when no policy matches', () => {
    it('returns cleared, audit or detained as the set says', () => {
      const none = [policy({ match: [{ repository: picomatch('other/**') }] })]
      assert.equal(evaluate(set(none), input(), NOW).outcome, 'cleared')
      assert.equal(
        evaluate(set(none, { unmatched: 'audit' }), input(), NOW).outcome,
        'cleared-with-warnings'
      )
      assert.equal(evaluate(set(none, { unmatched: 'deny' }), input(), NOW).outcome, 'detained')
    })
  })

  describe('when only constraining policies match', () => {
    it('the image is still unmatched: rules constrain, only authorities admit', () => {
      const constrain = policy({ name: 'no-latest', rules: { tags: { deny: picomatch('latest') } } })
      const d = evaluate(set([constrain], { unmatched: 'deny' }), input({ tag: 'v1' }), NOW)
      assert.equal(d.outcome, 'detained')
      assert.equal(d.rules.find((r) => !r.passed)?.policy, '(unmatched)')
      const admit = policy({ name: 'admit', authorities: [{ kind: 'static', name: 'ok', action: 'pass' }] })
      assert.equal(evaluate(set([constrain, admit], { unmatched: 'deny' }), input({ tag: 'v1' }), NOW).outcome, 'cleared')
    })
  })

  describe('when matching', () => {
    it('matches upstream exactly and repository by glob, ** crossing slashes', () => {
      const p = policy({
        match: [{ upstream: 'ghcr.io', repository: picomatch('acme/**') }],
        rules: { nonRoot: true },
      })
      assert.deepEqual(
        evaluate(
          set([p]),
          input({
            upstream: 'ghcr.io',
            repository: 'acme/a/b',
            image: { ...input().image, user: '' },
          }),
          NOW
        ).policies,
        ['p']
      )
      assert.deepEqual(evaluate(set([p]), input({ upstream: 'docker.io' }), NOW).policies, [])
    })
    it('a tag-scoped match applies only to pulls by a matching tag', () => {
      const p = policy({ match: [{ repository: picomatch('**'), tags: picomatch('v*') }] })
      assert.deepEqual(evaluate(set([p]), input({ tag: 'v1' }), NOW).policies, ['p'])
      assert.deepEqual(evaluate(set([p]), input({ tag: 'main' }), NOW).policies, [])
      assert.deepEqual(evaluate(set([p]), input(), NOW).policies, [])
    })
    it('requires every matching policy to pass', () => {
      const ok = policy({ name: 'ok' })
      const bad = policy({ name: 'bad', rules: { maxLayers: 1 } })
      const d = evaluate(set([ok, bad]), input(), NOW)
      assert.equal(d.outcome, 'detained')
      assert.deepEqual(
        d.rules.filter((r) => !r.passed).map((r) => [r.policy, r.rule]),
        [['bad', 'maxLayers']]
      )
    })
  })

  describe('signature authorities', () => {
    const ci = {
      kind: 'keyless' as const,
      name: 'ci',
      issuer: ISSUER,
      subjectRegExp: 'https://github\\.com/acme/app/.*',
    }
    const key = { kind: 'key' as const, name: 'release-key', key: 'release' }
    it('passes with a verified signature from one authority (OR)', () => {
      const s = set([policy({ authorities: [ci, key] })])
      assert.equal(evaluate(s, input({ verification: facts([keyless]) }), NOW).outcome, 'cleared')
      assert.equal(evaluate(s, input({ verification: facts([keyed]) }), NOW).outcome, 'cleared')
    })
    it('fails when no signature was found, or none is valid', () => {
      const s = set([policy({ authorities: [ci] })])
      const none = evaluate(s, input(), NOW)
      assert.equal(none.outcome, 'detained')
      assert.match(none.reasons[0] ?? '', /rule 'authorities'/)
      const invalid = evaluate(
        s,
        input({
          verification: facts([{ ...keyless, verified: false, reason: 'SIGNATURE_ERROR' }]),
        }),
        NOW
      )
      assert.equal(invalid.outcome, 'detained')
    })
    it('anchors the subject regex: a pattern inside the subject is not enough', () => {
      const s = set([policy({ authorities: [{ ...ci, subjectRegExp: 'acme' }] })])
      assert.equal(evaluate(s, input({ verification: facts([keyless]) }), NOW).outcome, 'detained')
    })
    it('checks the issuer exactly and extensions by value', () => {
      const wrongIssuer = set([
        policy({ authorities: [{ ...ci, issuer: 'https://accounts.google.com' }] }),
      ])
      assert.equal(
        evaluate(wrongIssuer, input({ verification: facts([keyless]) }), NOW).outcome,
        'detained'
      )
      const ext = set([
        policy({
          authorities: [
            { ...ci, extensions: { sourceRepositoryUri: 'https://github.com/evil/app' } },
          ],
        }),
      ])
      assert.equal(
        evaluate(ext, input({ verification: facts([keyless]) }), NOW).outcome,
        'detained'
      )
    })
    it('requires k of n authorities when authoritiesRequired says so', () => {
      const s = set([policy({ authorities: [ci, key], authoritiesRequired: 2 })])
      assert.equal(evaluate(s, input({ verification: facts([keyless]) }), NOW).outcome, 'detained')
      assert.equal(
        evaluate(s, input({ verification: facts([keyless, keyed]) }), NOW).outcome,
        'cleared'
      )
    })
    it('static authorities pass or fail without any signature', () => {
      assert.equal(
        evaluate(
          set([policy({ authorities: [{ kind: 'static', name: 's', action: 'pass' }] })]),
          input(),
          NOW
        ).outcome,
        'cleared'
      )
      assert.equal(
        evaluate(
          set([policy({ authorities: [{ kind: 'static', name: 's', action: 'fail' }] })]),
          input(),
          NOW
        ).outcome,
        'detained'
      )
    })
    it('when discovery failed, denies by default and allows when the policy says so', () => {
      const broken = facts([], { discoveryErrors: ['referrers: UPSTREAM_UNAVAILABLE'] })
      assert.equal(
        evaluate(set([policy({ authorities: [ci] })]), input({ verification: broken }), NOW)
          .outcome,
        'detained'
      )
      assert.equal(
        evaluate(
          set([policy({ authorities: [ci], onVerifierUnavailable: 'allow' })]),
          input({ verification: broken }),
          NOW
        ).outcome,
        'cleared'
      )
    })
  })

  describe('attestations', () => {
    const slsa = {
      name: 'prov',
      predicateType: 'https://slsa.dev/provenance/v1',
      slsa: { builderId: 'b' },
    }
    const att = (over: object = {}) => ({
      source: 'referrer' as const,
      artifact: D as never,
      verified: true,
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: { slsa: { builderId: 'b' } },
      ...over,
    })
    it('passes with a verified attestation meeting the conditions', () => {
      assert.equal(
        evaluate(
          set([policy({ attestations: [slsa] })]),
          input({ verification: facts([], { attestations: [att()] }) }),
          NOW
        ).outcome,
        'cleared'
      )
    })
    it('fails when missing, unverified, or of another builder', () => {
      const s = set([policy({ attestations: [slsa] })])
      assert.equal(evaluate(s, input(), NOW).outcome, 'detained')
      assert.equal(
        evaluate(
          s,
          input({
            verification: facts([], { attestations: [att({ verified: false, reason: 'x' })] }),
          }),
          NOW
        ).outcome,
        'detained'
      )
      assert.equal(
        evaluate(
          s,
          input({
            verification: facts([], {
              attestations: [att({ predicate: { slsa: { builderId: 'other' } } })],
            }),
          }),
          NOW
        ).outcome,
        'detained'
      )
    })
    it('fails a vulnerability scan older than allowed', () => {
      const vuln = {
        name: 'scan',
        predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
        vulnerabilities: { maxAgeMs: 86_400_000 },
      }
      const fresh = att({
        predicateType: vuln.predicateType,
        predicate: { vulnerabilities: { finishedOn: new Date(NOW - 3600_000).toISOString() } },
      })
      const old = att({
        predicateType: vuln.predicateType,
        predicate: {
          vulnerabilities: { finishedOn: new Date(NOW - 3 * 86_400_000).toISOString() },
        },
      })
      assert.equal(
        evaluate(
          set([policy({ attestations: [vuln] })]),
          input({ verification: facts([], { attestations: [fresh] }) }),
          NOW
        ).outcome,
        'cleared'
      )
      assert.equal(
        evaluate(
          set([policy({ attestations: [vuln] })]),
          input({ verification: facts([], { attestations: [old] }) }),
          NOW
        ).outcome,
        'detained'
      )
    })
  })

  describe('vulnerability findings', () => {
    const type = 'https://cosign.sigstore.dev/attestation/vuln/v1'
    const scan = (findings: Array<{ id: string; severity: string }>) => ({
      source: 'referrer' as const,
      artifact: D as never,
      verified: true,
      predicateType: type,
      predicate: { vulnerabilities: { finishedOn: new Date(NOW - 3600_000).toISOString(), findings } },
    })
    const rule = (allow?: string[]) => ({
      name: 'scan',
      predicateType: type,
      vulnerabilities: { failOn: 'high' as const, ...(allow ? { allow: new Set(allow) } : {}) },
    })
    it('passes when no finding is at or above the threshold', () => {
      const v = facts([], { attestations: [scan([{ id: 'CVE-1', severity: 'medium' }])] })
      assert.equal(evaluate(set([policy({ attestations: [rule()] })]), input({ verification: v }), NOW).outcome, 'cleared')
    })
    it('fails on a high or critical finding, and on an unknown severity', () => {
      for (const severity of ['high', 'critical', 'whatever']) {
        const v = facts([], { attestations: [scan([{ id: 'CVE-2', severity }])] })
        assert.equal(evaluate(set([policy({ attestations: [rule()] })]), input({ verification: v }), NOW).outcome, 'detained', severity)
      }
    })
    it('lets an allowlisted CVE through', () => {
      const v = facts([], { attestations: [scan([{ id: 'CVE-2', severity: 'critical' }])] })
      assert.equal(evaluate(set([policy({ attestations: [rule(['CVE-2'])] })]), input({ verification: v }), NOW).outcome, 'cleared')
    })
  })

  describe('image-fact rules', () => {
    const cases: Array<
      [string, CompiledRules, Partial<EvaluationInput>, Partial<EvaluationInput>]
    > = [
      ['tags deny', { tags: { deny: picomatch('latest') } }, { tag: 'v1' }, { tag: 'latest' }],
      ['tags allow', { tags: { allow: picomatch('v*') } }, { tag: 'v1' }, { tag: 'main' }],
      [
        'digests deny',
        { digests: { deny: new Set([`sha256:${'b'.repeat(64)}`]) } },
        {},
        { digest: `sha256:${'b'.repeat(64)}` },
      ],
      [
        'digests allow',
        { digests: { allow: new Set([D]) } },
        {},
        { digest: `sha256:${'c'.repeat(64)}` },
      ],
      [
        'maxAge',
        { maxAgeMs: 60 * 86_400_000 },
        {},
        { image: { ...input().image, created: '2020-01-01T00:00:00Z' } },
      ],
      [
        'labels',
        {
          labels: [
            {
              name: 'org.opencontainers.image.source',
              value: picomatch('https://github.com/acme/*'),
              pattern: 'https://github.com/acme/*',
            },
          ],
        },
        {},
        { image: { ...input().image, labels: {} } },
      ],
      [
        'platforms',
        { platforms: new Set(['linux/amd64']) },
        {},
        { image: { ...input().image, platforms: ['linux/s390x'] } },
      ],
      ['maxLayers', { maxLayers: 3 }, {}, { image: { ...input().image, layers: 4 } }],
      ['maxSize', { maxSizeBytes: 1000 }, {}, { image: { ...input().image, size: 1001 } }],
      ['nonRoot', { nonRoot: true }, {}, { image: { ...input().image, user: '' } }],
      [
        'cel',
        { cel: { source: 'x', evaluate: (f) => (f.image as { user: string }).user !== '' } },
        {},
        { image: { ...input().image, user: '' } },
      ],
    ]
    for (const [rule, rules, pass, fail] of cases) {
      it(`${rule}: passes and fails`, () => {
        assert.equal(evaluate(rulesPolicy(rules), input(pass), NOW).outcome, 'cleared')
        const d = evaluate(rulesPolicy(rules), input(fail), NOW)
        assert.equal(d.outcome, 'detained')
        assert.equal(d.rules.find((r) => !r.passed)?.rule, rule.split(' ')[0])
      })
    }
    it('a CEL expression that throws fails its rule, closed', () => {
      const d = evaluate(
        rulesPolicy({
          cel: {
            source: 'boom',
            evaluate: () => {
              throw new Error('no such key')
            },
          },
        }),
        input(),
        NOW
      )
      assert.equal(d.outcome, 'detained')
    })
    it('an index passes platforms when it offers an allowed one', () => {
      const index = {
        ...input().image,
        kind: 'index' as const,
        platforms: ['linux/amd64', 'linux/s390x'],
      }
      assert.equal(
        evaluate(rulesPolicy({ platforms: new Set(['linux/amd64']) }), input({ image: index }), NOW)
          .outcome,
        'cleared'
      )
    })
  })

  describe('modes and exceptions', () => {
    it('audit mode clears with warnings and keeps the reasons', () => {
      const d = evaluate(set([policy({ mode: 'audit', rules: { maxLayers: 1 } })]), input(), NOW)
      assert.equal(d.outcome, 'cleared-with-warnings')
      assert.equal(d.reasons.length, 1)
    })
    const exception = (expires: number, rules?: string[]): CompiledException => ({
      name: 'waiver',
      source: 'x.yaml:1',
      images: [{ repository: picomatch('acme/app') }],
      waives: [{ policy: 'p', ...(rules ? { rules } : {}) }],
      reason: 'migration',
      owner: 'team',
      expires,
    })
    it('an exception waives the named rule until it expires', () => {
      const p = policy({ rules: { maxLayers: 1 } })
      const active = evaluate(
        set([p], { exceptions: [exception(NOW + 1000, ['maxLayers'])] }),
        input(),
        NOW
      )
      assert.equal(active.outcome, 'cleared')
      assert.equal(active.rules.find((r) => r.rule === 'maxLayers')?.waivedBy, 'waiver')
      assert.equal(
        evaluate(set([p], { exceptions: [exception(NOW - 1000, ['maxLayers'])] }), input(), NOW)
          .outcome,
        'detained'
      )
      assert.equal(
        evaluate(set([p], { exceptions: [exception(NOW + 1000, ['nonRoot'])] }), input(), NOW)
          .outcome,
        'detained'
      )
      assert.equal(
        evaluate(set([p], { exceptions: [exception(NOW + 1000)] }), input(), NOW).outcome,
        'cleared'
      )
    })
  })
})
