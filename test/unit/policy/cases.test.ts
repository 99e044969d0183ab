// Policy test cases (`customs policy test DIR --cases FILE`): the shipped sets pass their own
// cases; a cases file is validated with positioned problems; cases become the inputs a pull
// would give; results print as PASS/FAIL lines; the command's exit codes. Also --image's
// reference parsing, which needs no registry.

import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseImageReference, policyTestCases } from '../../../src/cli/policy-test.js'
import type { PolicyIo } from '../../../src/cli/policy.js'
import { parseConfig } from '../../../src/config/load.js'
import {
  CasesError,
  caseInput,
  formatCaseResult,
  parseCases,
  runCases,
  type CaseIssue,
} from '../../../src/policy/cases.js'
import { loadPolicies, MAX_POLICY_FILE_BYTES } from '../../../src/policy/load.js'
import { exceptionDoc, load, policyDoc, yaml } from './helpers.js'

const NOW = Date.UTC(2026, 0, 1)
/** The embedded default configuration's upstreams: what `policy test` checks cases against. */
const UPSTREAMS = new Set(parseConfig('', { env: {} }).upstreams.map((u) => u.name))

function captureIo(): PolicyIo & { out: () => string; err: () => string } {
  let out = ''
  let err = ''
  return {
    stdout: { write: (text: string) => (out += text) },
    stderr: { write: (text: string) => (err += text) },
    out: () => out,
    err: () => err,
  }
}

function issuesOf(text: string): readonly CaseIssue[] {
  try {
    parseCases(text, 'cases.yaml', { upstreams: UPSTREAMS })
  } catch (err) {
    assert.ok(err instanceof CasesError, String(err))
    for (const issue of err.issues) {
      assert.ok(issue.line >= 1 && issue.column >= 1, JSON.stringify(issue))
    }
    return err.issues
  }
  assert.fail('expected a CasesError')
}

/** `line:column path: message` of each issue, for compact assertions. */
function brief(issues: readonly CaseIssue[]): string[] {
  return issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`)
}

describe('the shipped sets pass their cases', () => {
  for (const set of ['default', 'examples']) {
    it(`policy test policies/${set} --cases policies/${set}.cases.yaml: all PASS`, async () => {
      const file = `policies/${set}.cases.yaml`
      const policies = await loadPolicies(`policies/${set}`, { keyNames: new Set() })
      const cases = parseCases(await readFile(file, 'utf8'), file, { upstreams: UPSTREAMS })
      assert.ok(cases.length >= 5)
      const results = runCases(policies, cases)
      for (const r of results) assert.ok(r.passed, formatCaseResult(r))

      const io = captureIo()
      const options = { keyNames: new Set<string>(), upstreams: UPSTREAMS }
      assert.equal(await policyTestCases(`policies/${set}`, file, io, options), 0, io.err())
      const lines = io.out().trimEnd().split('\n')
      assert.equal(lines.length, cases.length + 1)
      for (const line of lines.slice(0, -1)) assert.match(line, /^PASS /)
      assert.equal(lines.at(-1), `${cases.length} cases: ${cases.length} passed, 0 failed`)
    })
  }
})

describe('parseCases', () => {
  it('fills the facts a case leaves out, as a pull of a plain image would', () => {
    const [c] = parseCases(
      yaml`
        - name: plain
          image: { upstream: docker.io, repository: alpine, tag: "3.19" }
          expect: cleared
      `,
      'cases.yaml'
    )
    assert.ok(c !== undefined)
    const input = caseInput(c, NOW)
    assert.equal(input.repository, 'library/alpine', 'as the router names it')
    assert.equal(input.tag, '3.19')
    assert.match(input.digest, /^sha256:[0-9a-f]{64}$/)
    assert.deepEqual(input.image, {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      kind: 'image',
      created: new Date(NOW - 30 * 86_400_000).toISOString(),
      labels: {},
      platforms: ['linux/amd64'],
      layers: 2,
      size: 1000,
      user: '1000',
      annotations: {},
    })
    assert.deepEqual(input.verification, {
      signatures: [],
      attestations: [],
      notation: 0,
      discoveryErrors: [],
    })
  })

  it('takes facts, signatures and attestations as written; ages are before now', () => {
    const [c] = parseCases(
      yaml`
        - name: full
          image:
            upstream: ghcr.io
            repository: acme/app
            digest: sha256:${'b'.repeat(64)}
          facts:
            created: 400d
            labels: { team: core }
            platforms: [linux/arm64/v8]
            layers: 7
            size: 2MiB
            user: root
          signatures:
            - { kind: keyed, key: release }
            - kind: keyless
              subject: https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1
              issuer: https://token.actions.githubusercontent.com
              extensions: { buildTrigger: push }
              verified: false
          attestations:
            - predicateType: https://slsa.dev/provenance/v1
              slsa: { builderId: https://builder.example }
            - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
              vulnerabilities: { finishedOn: 2025-12-31T00:00:00Z }
              signer: { kind: keyed, key: release }
          discoveryErrors: [upstream unavailable]
          expect: detained
      `,
      'cases.yaml'
    )
    assert.ok(c !== undefined)
    const input = caseInput(c, NOW)
    assert.equal(input.tag, undefined, 'without a tag, a pull by digest')
    assert.equal(input.digest, `sha256:${'b'.repeat(64)}`)
    assert.equal(input.image.created, new Date(NOW - 400 * 86_400_000).toISOString())
    assert.deepEqual(
      [input.image.labels, input.image.platforms, input.image.layers, input.image.size],
      [{ team: 'core' }, ['linux/arm64/v8'], 7, 2 * 1024 * 1024]
    )
    assert.equal(input.image.user, 'root')
    const [keyed, keyless] = input.verification?.signatures ?? []
    assert.deepEqual([keyed?.verified, keyed?.kind, keyed?.key], [true, 'keyed', 'release'])
    assert.equal(keyless?.verified, false)
    assert.equal(keyless?.reason, 'the signature did not verify')
    assert.deepEqual(keyless?.identity, {
      subject: 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1',
      issuer: 'https://token.actions.githubusercontent.com',
      extensions: { buildTrigger: 'push' },
    })
    const [slsa, vuln] = input.verification?.attestations ?? []
    assert.deepEqual(slsa?.predicate, { slsa: { builderId: 'https://builder.example' } })
    assert.deepEqual(vuln?.predicate, { vulnerabilities: { finishedOn: '2025-12-31T00:00:00Z' } })
    assert.equal(vuln?.key, 'release')
    assert.deepEqual(input.verification?.discoveryErrors, ['upstream unavailable'])
  })

  it('describes an index by its platforms only', () => {
    const [c] = parseCases(
      yaml`
        - name: index
          image: { upstream: ghcr.io, repository: acme/app, tag: v1 }
          facts: { kind: index, platforms: [linux/amd64, linux/arm64] }
          expect: cleared
      `,
      'cases.yaml'
    )
    assert.ok(c !== undefined)
    const { image } = caseInput(c, NOW)
    assert.equal(image.kind, 'index')
    assert.deepEqual(image.platforms, ['linux/amd64', 'linux/arm64'])
    assert.equal(image.created, undefined)
    assert.equal(image.layers, undefined)
  })

  it('reports every problem at its line and column', () => {
    const issues = issuesOf(yaml`
      - name: one
        image: { upstream: docker.io, repository: Alpine, tag: "a b" }
        facts: { kind: index, user: root, platform: [x] }
        signatures:
          - { kind: keyless, key: k }
          - { kind: keyed, subject: s }
        expect: allowed
        expectRules: [tags]
      - name: one
        image: { upstream: example.org, repository: a/b }
        expect: cleared
      - 3
    `)
    assert.deepEqual(brief(issues), [
      '2:45 [0].image.repository: must be a repository name such as library/alpine',
      '2:58 [0].image.tag: must be a tag such as v1.2.0',
      '3:31 [0].facts.user: an index has no such fact',
      '3:37 [0].facts.platform: unknown key (expected one of kind, created, labels, platforms, layers, size, user)',
      '5:7 [0].signatures[0].subject: is required for a keyless signer',
      '5:29 [0].signatures[0].key: a keyless signer has no key (kind: keyed has)',
      '6:7 [0].signatures[1].key: is required for a keyed signer: a trust.keys name',
      '6:31 [0].signatures[1].subject: a keyed signer has no identity (kind: keyless has)',
      '7:11 [0].expect: must be one of cleared, cleared-with-warnings, detained',
      "8:17 [0].expectRules[0]: must be 'policy/rule', such as baseline/tags or (unmatched)/match",
      '9:9 [1].name: also names case [0]',
      '10:22 [1].image.upstream: is not a configured upstream (docker.io, gcr.io, ghcr.io, quay.io, registry.k8s.io)',
      '12:3 [2]: expected mapping, got integer',
    ])
  })

  it('refuses YAML that does not parse, an empty file, and a mapping', () => {
    assert.deepEqual(brief(issuesOf('- name: a\n  name: b\n')), ['2:3 : Map keys must be unique'])
    assert.deepEqual(brief(issuesOf('# nothing\n')), [
      '1:1 : holds no cases: expected a list of cases',
    ])
    assert.deepEqual(brief(issuesOf('name: a\n')), ['1:1 : expected list, got mapping'])
    assert.deepEqual(brief(issuesOf('[]\n')), ['1:1 : must list at least 1'])
  })

  it('refuses a verified keyed signature by a key trust.keys does not have', () => {
    const text = yaml`
      - name: a
        image: { upstream: docker.io, repository: a/b }
        signatures:
          - { kind: keyed, key: release }
          - { kind: keyed, key: other }
          - { kind: keyed, key: other, verified: false }
        attestations:
          - { predicateType: x, signer: { kind: keyed, key: other } }
          - { predicateType: x, verified: false, signer: { kind: keyed, key: other } }
        expect: cleared
    `
    assert.equal(parseCases(text, 'cases.yaml').length, 1, 'not checked without key names')
    let issues: readonly CaseIssue[] = []
    try {
      parseCases(text, 'cases.yaml', { keyNames: new Set(['release']) })
    } catch (err) {
      assert.ok(err instanceof CasesError)
      issues = err.issues
    }
    const why = 'is not a key of trust.keys, so no signature by it verifies (known: release)'
    assert.deepEqual(brief(issues), [
      `5:27 [0].signatures[1].key: ${why}`,
      `8:55 [0].attestations[0].signer.key: ${why}`,
    ])
  })

  it('refuses a time that is neither a date nor an age', () => {
    const issues = issuesOf(yaml`
      - name: a
        image: { upstream: docker.io, repository: a/b }
        facts: { created: yesterday }
        expect: cleared
    `)
    assert.deepEqual(brief(issues), [
      '3:21 [0].facts.created: must be a time (2025-06-01T12:00:00Z) or an age before now (30d, 12h)',
    ])
  })
})

describe('runCases and formatCaseResult', () => {
  const set = load({
    'set.yaml': [
      policyDoc(
        'baseline',
        'match: [{ repository: "**" }]\nauthorities: [{ name: any, static: pass }]\nrules: { tags: { deny: [latest] }, nonRoot: true }'
      ),
      exceptionDoc(
        'legacy',
        'images: [{ repository: acme/legacy }]\nwaives: [{ policy: baseline, rules: [nonRoot] }]\nreason: r\nowner: o\nexpires: 2099-01-01'
      ),
    ].join('---\n'),
  })
  const cases = parseCases(
    yaml`
      - name: fine
        image: { upstream: docker.io, repository: acme/app, tag: v1 }
        expect: cleared
      - name: wrong outcome
        image: { upstream: docker.io, repository: acme/app, tag: latest }
        facts: { user: "" }
        expect: cleared
      - name: right outcome, rule not failing
        image: { upstream: docker.io, repository: acme/app, tag: latest }
        expect: detained
        expectRules: [baseline/tags, baseline/nonRoot, nope/tags]
      - name: a waived failure still fails its rule
        image: { upstream: docker.io, repository: acme/legacy, tag: v1 }
        facts: { user: "0" }
        expect: cleared
        expectRules: [baseline/nonRoot]
    `,
    'cases.yaml'
  )

  it('prints PASS with the outcome, FAIL with what was expected, what came and why', () => {
    const lines = runCases(set, cases, NOW).map(formatCaseResult)
    assert.deepEqual(lines, [
      'PASS fine: cleared',
      "FAIL wrong outcome: expected cleared, got detained: policy 'baseline' rule 'tags': tag latest is denied; " +
        "policy 'baseline' rule 'nonRoot': the image runs as \"\" (root)",
      'FAIL right outcome, rule not failing: detained as expected, but baseline/nonRoot did not fail; ' +
        'nope/tags did not fail (the set has no policy nope) (failed: baseline/tags)',
      'PASS a waived failure still fails its rule: cleared',
    ])
  })

  it('returns the decision with every rule, and whether each case passed', () => {
    const [fine, wrong] = runCases(set, cases, NOW)
    assert.equal(fine?.passed, true)
    assert.deepEqual(
      fine?.decision.rules.map((r) => `${r.policy}/${r.rule} ${r.passed}`),
      ['baseline/authorities true', 'baseline/tags true', 'baseline/nonRoot true']
    )
    assert.equal(wrong?.passed, false)
    assert.equal(wrong?.expected, 'cleared')
    assert.equal(wrong?.decision.outcome, 'detained')
  })
})

describe('policyTestCases', () => {
  let root: string
  let policies: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'customs-cases-'))
    policies = join(root, 'policies')
    await mkdir(policies)
    await writeFile(
      join(policies, 'set.yaml'),
      policyDoc('baseline', 'match: [{ repository: "**" }]\nrules: { tags: { deny: [latest] } }')
    )
  })
  after(async () => {
    await rm(root, { recursive: true, force: true })
  })
  const options = { keyNames: new Set<string>(), upstreams: UPSTREAMS }

  it('exits 1 when a case does not get its expected outcome', async () => {
    const file = join(root, 'cases.yaml')
    await writeFile(
      file,
      '- name: latest\n  image: { upstream: docker.io, repository: a/b, tag: latest }\n  expect: cleared\n'
    )
    const io = captureIo()
    assert.equal(await policyTestCases(policies, file, io, options), 1)
    assert.equal(
      io.out(),
      "FAIL latest: expected cleared, got detained: policy 'baseline' rule 'tags': tag latest is denied\n" +
        '1 case: 0 passed, 1 failed\n'
    )
  })

  it('exits 2 when the cases file cannot be read or does not validate', async () => {
    const io = captureIo()
    const missing = join(root, 'missing.yaml')
    assert.equal(await policyTestCases(policies, missing, io, options), 2)
    assert.equal(io.err(), `${missing}:1:1: cannot read the cases file (ENOENT)\n`)
    const huge = join(root, 'huge.yaml')
    await writeFile(huge, `# ${'x'.repeat(MAX_POLICY_FILE_BYTES)}\n`)
    const ioHuge = captureIo()
    assert.equal(await policyTestCases(policies, huge, ioHuge, options), 2)
    assert.equal(ioHuge.err(), `${huge}:1:1: cannot read the cases file (over the 1.0 MiB limit)\n`)
    const bad = join(root, 'bad.yaml')
    await writeFile(bad, '- name: x\n')
    const io2 = captureIo()
    assert.equal(await policyTestCases(policies, bad, io2, options), 2)
    assert.match(io2.err(), /bad\.yaml:1:3 \[0\]\.image: is required\n/)
    assert.match(io2.err(), /bad\.yaml: invalid cases \(2 problems\)\n$/)
    assert.equal(io2.out(), '')
  })

  it('exits 2 with every problem when the policies do not validate', async () => {
    const io = captureIo()
    const file = join(root, 'cases.yaml')
    assert.equal(await policyTestCases(join(root, 'nowhere'), file, io, options), 2)
    assert.match(
      io.err(),
      /nowhere:1:1: cannot read the policy folder \(ENOENT\)\n.*invalid policies \(1 problem\)\n$/s
    )
  })
})

describe('parseImageReference', () => {
  const D = `sha256:${'c'.repeat(64)}`
  const cases: Array<[string, string, string]> = [
    ['alpine', 'alpine', 'tag latest'],
    ['alpine:3.19', 'alpine', 'tag 3.19'],
    ['docker.io/library/alpine:3.19', 'docker.io/library/alpine', 'tag 3.19'],
    ['127.0.0.1:5000/acme/app', '127.0.0.1:5000/acme/app', 'tag latest'],
    ['127.0.0.1:5000/acme/app:v1', '127.0.0.1:5000/acme/app', 'tag v1'],
    [`ghcr.io/acme/app@${D}`, 'ghcr.io/acme/app', `digest ${D}`],
    [`ghcr.io/acme/app:v1@${D}`, 'ghcr.io/acme/app', `digest ${D}`],
  ]
  for (const [ref, name, reference] of cases) {
    it(`${ref} -> ${name} ${reference}`, () => {
      const parsed = parseImageReference(ref)
      assert.equal(parsed.name, name)
      const r = parsed.reference
      assert.equal(r.kind === 'tag' ? `tag ${r.tag}` : `digest ${r.digest}`, reference)
    })
  }

  it('refuses a malformed tag or digest', () => {
    assert.throws(() => parseImageReference('alpine:a:b'), /invalid tag "a:b"/)
    assert.throws(() => parseImageReference('alpine@sha256:abc'), /invalid digest/)
  })
})
