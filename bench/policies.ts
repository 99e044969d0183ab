// The policy phase of the pull benchmark: a generated set of varied policies (keyless authorities
// with regexes and extensions, static passes, rules of every kind, CEL, tag-scoped matches,
// attestations), every one matching the test image, loaded through parsePolicyDocuments; then one
// manifest's facts evaluated against the whole set many times, in this process: no services.

import { performance } from 'node:perf_hooks'
import { evaluate, type EvaluationInput } from '../src/policy/evaluate.js'
import { parsePolicyDocuments } from '../src/policy/load.js'
import type { Digest } from '../src/oci/digest.js'

const GITHUB = 'https://token.actions.githubusercontent.com'
const SUBJECT = 'https://github.com/bench/app/.github/workflows/release.yml@refs/tags/v1.2.3'
const SOURCE = 'https://github.com/bench/app'
const BUILDER =
  'https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0'
const PROVENANCE = 'https://slsa.dev/provenance/v1'

/** What the phase measured. */
export interface PolicyResults {
  policies: number
  /** Of them: with keyless authorities, tag-scoped, with CEL, with attestations, audit mode. */
  kinds: { keyless: number; tagScoped: number; cel: number; attestations: number; audit: number }
  /** parsePolicyDocuments of the generated YAML, ms. */
  loadMs: number
  evaluations: number
  warmup: number
  /** Per-evaluation times, µs, in order. */
  samples: number[]
  /** The whole timed loop divided by the evaluations, µs. */
  meanUs: number
  /** The decision reached (every time): its outcome and rule outcomes. */
  outcome: string
  rules: number
}

/** Policy `i` of the generated set, as YAML: the variety cycles with i. */
function policyYaml(i: number): {
  text: string
  keyless: boolean
  tagScoped: boolean
  cel: boolean
  attestations: boolean
  audit: boolean
} {
  const lines = [
    'apiVersion: customs.dev/v1',
    'kind: ImagePolicy',
    `metadata: { name: p-${i} }`,
    'spec:',
  ]
  const audit = i % 5 === 4
  lines.push(`  mode: ${audit ? 'audit' : 'enforce'}`)
  // Every match list fits docker.io/bench/app:v1.2.3; some after one that does not.
  const tagScoped = i % 4 === 0 || i % 4 === 3
  lines.push('  match:')
  if (i % 4 === 0) {
    lines.push('    - { upstream: ghcr.io, repository: "other/**" }')
    lines.push('    - { upstream: docker.io, repository: bench/app, tags: ["v*", "release-*"] }')
  } else if (i % 4 === 1) {
    lines.push('    - { repository: "**" }')
  } else if (i % 4 === 2) {
    lines.push('    - { upstream: docker.io, repository: "bench/*" }')
  } else {
    lines.push('    - { upstream: docker.io, repository: "bench/**", tags: ["v1.*"] }')
  }
  // Half the policies name keyless signers, the first of two sometimes another issuer's.
  const keyless = i % 2 === 0
  if (keyless) {
    lines.push('  authorities:')
    if (i % 3 === 0) {
      lines.push(
        '    - { name: gitlab, keyless: { issuer: "https://gitlab.com", subjectRegExp: "https://gitlab\\\\.com/.+" } }'
      )
    }
    if (i % 3 === 1) {
      lines.push(`    - { name: exact, keyless: { issuer: "${GITHUB}", subject: "${SUBJECT}" } }`)
    } else {
      lines.push('    - name: release')
      lines.push('      keyless:')
      lines.push(`        issuer: ${GITHUB}`)
      lines.push(
        '        subjectRegExp: "https://github\\\\.com/bench/[^/]+/\\\\.github/workflows/release\\\\.yml@refs/tags/v.+"'
      )
      if (i % 3 === 2)
        lines.push(`        extensions: { buildTrigger: push, sourceRepositoryUri: "${SOURCE}" }`)
    }
  } else if (i % 6 === 1) {
    lines.push('  authorities: [{ name: any, static: pass }]')
  }
  const attestations = i % 10 === 0
  if (attestations) {
    lines.push(
      `  attestations: [{ name: provenance, predicateType: "${PROVENANCE}", slsa: { builderId: "${BUILDER}" } }]`
    )
  }
  const cel = i % 7 === 5
  const rules = [
    'tags: { deny: [latest] }\n    maxAge: 365d',
    'labels: { org.opencontainers.image.source: "https://github.com/bench/*" }',
    'platforms: [linux/amd64, linux/arm64]\n    maxLayers: 50',
    'maxSize: 2GiB\n    nonRoot: true',
    `digests: { deny: [sha256:${'0'.repeat(64)}] }`,
    `cel: "image.labels['team'] == 'core' && size(signatures) > 0"`,
    'tags: { allow: ["v*"] }',
  ][i % 7] as string
  lines.push('  rules:', `    ${rules}`)
  return { text: `${lines.join('\n')}\n`, keyless, tagScoped, cel, attestations, audit }
}

/** The pull every evaluation judges: a signed image with provenance, by tag. */
function benchInput(now: number): EvaluationInput {
  const identity = {
    subject: SUBJECT,
    issuer: GITHUB,
    extensions: { buildTrigger: 'push', sourceRepositoryUri: SOURCE },
  }
  const artifact = `sha256:${'1'.repeat(64)}` as Digest
  return {
    upstream: 'docker.io',
    repository: 'bench/app',
    tag: 'v1.2.3',
    digest: `sha256:${'a'.repeat(64)}`,
    image: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      kind: 'image',
      created: new Date(now - 30 * 86_400_000).toISOString(),
      labels: { team: 'core', 'org.opencontainers.image.source': SOURCE },
      platforms: ['linux/amd64'],
      layers: 5,
      size: 50_000_000,
      user: '1000',
      annotations: {},
    },
    verification: {
      signatures: [
        { source: 'legacy-sig', artifact, verified: true, kind: 'keyless', identity, tlog: true },
      ],
      attestations: [
        {
          source: 'legacy-att',
          artifact,
          verified: true,
          kind: 'keyless',
          identity,
          predicateType: PROVENANCE,
          predicate: { slsa: { builderId: BUILDER, sourceUri: `git+${SOURCE}` } },
        },
      ],
      notation: 0,
      discoveryErrors: [],
    },
  }
}

/**
 * Generates `policies` policies, loads them, checks that every one matches the test image and
 * that it is cleared, then evaluates it `evaluations` times (after `warmup` untimed), timing each.
 */
export function measurePolicies(options: {
  policies: number
  evaluations: number
  warmup: number
}): PolicyResults {
  const generated = Array.from({ length: options.policies }, (_, i) => policyYaml(i))
  const text = generated.map((g) => g.text).join('---\n')
  const count = (key: 'keyless' | 'tagScoped' | 'cel' | 'attestations' | 'audit'): number =>
    generated.filter((g) => g[key]).length
  const t0 = performance.now()
  const set = parsePolicyDocuments([{ path: 'bench-policies.yaml', text }], {
    keyNames: new Set(),
    upstreams: new Set(['docker.io', 'ghcr.io']),
  })
  const loadMs = performance.now() - t0
  const now = Date.now()
  const input = benchInput(now)
  const decision = evaluate(set, input, now)
  if (decision.policies.length !== options.policies || decision.outcome !== 'cleared') {
    const why = decision.reasons.slice(0, 3).join('; ')
    throw new Error(
      `the bench image should match all ${options.policies} policies and be cleared: ` +
        `${decision.policies.length} matched, ${decision.outcome}${why === '' ? '' : `: ${why}`}`
    )
  }
  // The rule counts are summed so the work cannot be optimised away.
  let sink = 0
  for (let i = 0; i < options.warmup; i++) sink += evaluate(set, input, now).rules.length
  const samples: number[] = new Array<number>(options.evaluations)
  const start = performance.now()
  for (let i = 0; i < options.evaluations; i++) {
    const a = performance.now()
    sink += evaluate(set, input, now).rules.length
    samples[i] = (performance.now() - a) * 1000
  }
  const meanUs = ((performance.now() - start) * 1000) / options.evaluations
  if (sink !== decision.rules.length * (options.warmup + options.evaluations)) {
    throw new Error('an evaluation reached another decision')
  }
  return {
    policies: options.policies,
    kinds: {
      keyless: count('keyless'),
      tagScoped: count('tagScoped'),
      cel: count('cel'),
      attestations: count('attestations'),
      audit: count('audit'),
    },
    loadMs,
    evaluations: options.evaluations,
    warmup: options.warmup,
    samples,
    meanUs,
    outcome: decision.outcome,
    rules: decision.rules.length,
  }
}
