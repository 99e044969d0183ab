// Policy test cases (`customs policy test DIR --cases FILE`): a YAML list of images, each with the
// facts a pull would find (config facts, signatures, attestations) and the verdict the policy set
// must reach. Parsed and validated like policy documents, every problem at file:line:column, then
// evaluated offline with policy/evaluate.ts; the pure core of the command, like `kyverno test`.

import { createHash } from 'node:crypto'
import { LineCounter, parseDocument } from 'yaml'
import { z } from 'zod'
import { formatPath } from '../config/load.js'
import { parseDuration, parseSize } from '../config/units.js'
import { isDigest, type Digest } from '../oci/digest.js'
import { isRepositoryName, isTag } from '../oci/reference.js'
import { FULCIO_EXTENSIONS, type ExtensionName } from '../verify/identity.js'
import type { AttestationFact, SignatureFact } from '../verify/facts.js'
import { evaluate, type Decision, type EvaluationInput, type Outcome } from './evaluate.js'
import { formatPolicyIssue, MAX_ALIASES, MAX_POLICY_FILE_BYTES } from './load.js'
import {
  flattenZodIssues,
  lineColumn,
  locate,
  zodMessage,
  type Path,
} from '../config/yaml-positions.js'
import type { PolicySet } from './types.js'

/** One problem of a cases file, positioned like a policy issue. */
export interface CaseIssue {
  readonly file: string
  readonly line: number
  readonly column: number
  /** Where in the file: `[2].signatures[0].subject`; '' for the file as a whole. */
  readonly path: string
  readonly message: string
}

/** A cases file was refused; `issues` holds every problem found, in file order. */
export class CasesError extends Error {
  readonly issues: readonly CaseIssue[]

  constructor(issues: readonly CaseIssue[]) {
    super(issues.map(formatPolicyIssue).join('\n'))
    this.name = 'CasesError'
    this.issues = issues
  }
}

/** What an image's facts default to: a month-old linux/amd64 image, 2 layers, not run as root. */
export const DEFAULT_FACTS = Object.freeze({
  ageMs: 30 * 86_400_000,
  platforms: Object.freeze(['linux/amd64']),
  layers: 2,
  size: 1000,
  user: '1000',
})

const OUTCOMES = ['cleared', 'cleared-with-warnings', 'detained'] as const
const MEDIA_TYPES = {
  image: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
} as const

// ---------------------------------------------------------------------------------------------
// The schema

function fail(ctx: z.core.$RefinementCtx, message: string, path?: PropertyKey[]): void {
  ctx.addIssue({ code: 'custom', message, ...(path !== undefined ? { path } : {}) })
}

/** A point in time: an RFC 3339 time or date as written, or an age (`30d`) before the run. */
export type When = { readonly at: string } | { readonly ageMs: number }

const when = z.string().transform((value, ctx): When => {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    if (Number.isFinite(Date.parse(value))) return { at: value }
    fail(ctx, `${value} is not a valid time`)
    return z.NEVER
  }
  try {
    return { ageMs: parseDuration(value) }
  } catch {
    fail(ctx, 'must be a time (2025-06-01T12:00:00Z) or an age before now (30d, 12h)')
    return z.NEVER
  }
})

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    return parseSize(value)
  } catch (err) {
    fail(ctx, (err as Error).message)
    return z.NEVER
  }
})

const image = z
  .strictObject({
    upstream: z.string().min(1),
    repository: z
      .string()
      .refine(isRepositoryName, 'must be a repository name such as library/alpine'),
    /** Absent: a pull by digest, to which tag rules and tag-scoped matches do not apply. */
    tag: z.string().refine(isTag, 'must be a tag such as v1.2.0').optional(),
    digest: z.string().refine(isDigest, 'must be a sha256 or sha512 digest').optional(),
  })
  .transform((i) => ({
    ...i,
    // What the router makes of a one-component Docker Hub name, so that policies see the same.
    repository:
      i.upstream === 'docker.io' && !i.repository.includes('/')
        ? `library/${i.repository}`
        : i.repository,
  }))

const facts = z
  .strictObject({
    kind: z.enum(['image', 'index']).default('image'),
    created: when.optional(),
    labels: z.record(z.string(), z.string()).default({}),
    platforms: z
      .array(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/, 'must be os/arch[/variant]'))
      .optional(),
    layers: z.number().int().min(0).optional(),
    size: size.optional(),
    user: z.string().optional(),
  })
  .superRefine((f, ctx) => {
    if (f.kind !== 'index') return
    // An index has no config: these facts are never known for one.
    for (const key of ['created', 'layers', 'size', 'user'] as const) {
      if (f[key] !== undefined) fail(ctx, 'an index has no such fact', [key])
    }
  })

const extensionNames = Object.keys(FULCIO_EXTENSIONS) as ExtensionName[]
const extensions = z.strictObject(
  Object.fromEntries(extensionNames.map((n) => [n, z.string().optional()])) as Record<
    ExtensionName,
    z.ZodOptional<z.ZodString>
  >
)

/** Who signed: a Fulcio identity (keyless) or a key of the configuration's trust.keys (keyed). */
const signerFields = {
  kind: z.enum(['keyless', 'keyed']),
  subject: z.string().min(1).optional(),
  issuer: z.string().min(1).optional(),
  extensions: extensions.optional(),
  key: z.string().min(1).optional(),
}

type SignerInput = {
  kind: 'keyless' | 'keyed'
  subject?: string | undefined
  issuer?: string | undefined
  extensions?: Partial<Record<ExtensionName, string | undefined>> | undefined
  key?: string | undefined
}

function checkSigner(s: SignerInput, ctx: z.core.$RefinementCtx): void {
  if (s.kind === 'keyless') {
    if (s.subject === undefined) fail(ctx, 'is required for a keyless signer', ['subject'])
    if (s.key !== undefined) fail(ctx, 'a keyless signer has no key (kind: keyed has)', ['key'])
  } else {
    if (s.key === undefined) fail(ctx, 'is required for a keyed signer: a trust.keys name', ['key'])
    for (const field of ['subject', 'issuer', 'extensions'] as const) {
      if (s[field] !== undefined)
        fail(ctx, 'a keyed signer has no identity (kind: keyless has)', [field])
    }
  }
}

const signer = z.strictObject(signerFields).superRefine(checkSigner)

const signature = z
  .strictObject({
    ...signerFields,
    verified: z.boolean().default(true),
    /** Why it failed, when not verified. */
    reason: z.string().min(1).optional(),
  })
  .superRefine(checkSigner)

const attestation = z.strictObject({
  predicateType: z.string().min(1),
  verified: z.boolean().default(true),
  reason: z.string().min(1).optional(),
  /** Who signed the attestation; absent, a keyless signer nobody names. */
  signer: signer.optional(),
  slsa: z
    .strictObject({
      builderId: z.string().min(1).optional(),
      sourceUri: z.string().min(1).optional(),
    })
    .optional(),
  vulnerabilities: z
    .strictObject({ finishedOn: when.optional(), scanner: z.string().min(1).optional() })
    .optional(),
})

const policyRule = z
  .string()
  .regex(/^[^/\s]+\/[^/\s]+$/, "must be 'policy/rule', such as baseline/tags or (unmatched)/match")

const testCase = z.strictObject({
  name: z.string().trim().min(1),
  image,
  facts: facts.prefault({}),
  signatures: z.array(signature).default([]),
  attestations: z.array(attestation).default([]),
  /** Problems met looking for signatures: the verifier was unavailable (onVerifierUnavailable). */
  discoveryErrors: z.array(z.string().min(1)).default([]),
  expect: z.enum(OUTCOMES),
  /** Rules that must fail (waived or not), `policy/rule`. */
  expectRules: z.array(policyRule).default([]),
})

const casesSchema = z.array(testCase).min(1)

/** A case as written, for the checks made whatever its shape. */
interface RawSigner {
  readonly kind?: unknown
  readonly key?: unknown
  readonly verified?: unknown
}
interface RawCase {
  readonly name?: unknown
  readonly image?: { readonly upstream?: unknown } | null
  readonly signatures?: unknown
  readonly attestations?: unknown
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? (value as unknown[]) : []
}

/** One validated case. */
export type PolicyCase = z.output<typeof testCase>

// ---------------------------------------------------------------------------------------------
// Parsing

/** What the configuration tells of the cases that may be described. */
export interface CaseCheckOptions {
  /** The configured upstream names: a case naming another would never match a policy. */
  readonly upstreams?: ReadonlySet<string>
  /** The names of trust.keys: only those can have made a verified keyed signature. */
  readonly keyNames?: ReadonlySet<string>
}

/**
 * Parses and validates a cases file: a YAML list of cases. `file` names it in messages; with
 * `options`, cases are checked against the configuration. Throws CasesError with every problem,
 * each at file:line:column.
 */
export function parseCases(
  text: string,
  file: string,
  options: CaseCheckOptions = {}
): PolicyCase[] {
  const whole = (message: string): CasesError =>
    new CasesError([{ file, line: 1, column: 1, path: '', message }])
  if (Buffer.byteLength(text) > MAX_POLICY_FILE_BYTES) {
    throw whole('is over the 1 MiB limit for a cases file')
  }
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    stringKeys: true,
  })
  const at = (offset: number | undefined, path: string, message: string): CaseIssue => ({
    file,
    ...lineColumn(lineCounter, offset),
    path,
    message,
  })
  const problems = [...doc.errors, ...doc.warnings]
  if (problems.length > 0) {
    throw new CasesError(problems.map((e) => at(e.pos[0], '', e.message)))
  }
  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES })
  } catch (err) {
    throw whole((err as Error).message)
  }
  if (data === null || data === undefined) throw whole('holds no cases: expected a list of cases')
  const parsed = casesSchema.safeParse(data, { error: zodMessage })
  const issues: CaseIssue[] = []
  const issueAt = (path: Path, message: string, atKey = false): CaseIssue =>
    at(locate(doc, path, atKey), formatPath(path), message)
  if (!parsed.success) {
    for (const raw of flattenZodIssues(parsed.error.issues, casesSchema, data)) {
      issues.push(issueAt(raw.path, raw.message, raw.atKey === true))
    }
  }
  // What needs more than one case, or the configuration: checked whatever else is wrong.
  const seen = new Map<string, number>()
  for (const [i, c] of list(data).entries()) {
    const { name, image, signatures, attestations } = (c ?? {}) as RawCase
    if (typeof name === 'string') {
      const first = seen.get(name.trim())
      if (first !== undefined) issues.push(issueAt([i, 'name'], `also names case [${first}]`))
      else seen.set(name.trim(), i)
    }
    const upstream = typeof image === 'object' && image !== null ? image.upstream : undefined
    const { upstreams, keyNames } = options
    if (typeof upstream === 'string' && upstreams !== undefined && !upstreams.has(upstream)) {
      const known = [...upstreams].sort().join(', ')
      issues.push(issueAt([i, 'image', 'upstream'], `is not a configured upstream (${known})`))
    }
    if (keyNames === undefined) continue
    // A verified keyed signature can only be by a configured key: another one never verifies.
    const signers: Array<[Path, RawSigner | undefined]> = [
      ...list(signatures).map((sig, j): [Path, RawSigner | undefined] => [
        [i, 'signatures', j],
        sig as RawSigner | undefined,
      ]),
      ...list(attestations).map((att, j): [Path, RawSigner | undefined] => {
        const a = att as { signer?: RawSigner; verified?: unknown } | undefined
        const signer = a?.signer === undefined ? undefined : { ...a.signer, verified: a.verified }
        return [[i, 'attestations', j, 'signer'], signer]
      }),
    ]
    for (const [path, s] of signers) {
      if (typeof s !== 'object' || s === null || s.kind !== 'keyed') continue
      if (s.verified === false || typeof s.key !== 'string' || keyNames.has(s.key)) continue
      const known =
        keyNames.size === 0 ? 'none are configured' : `known: ${[...keyNames].sort().join(', ')}`
      const message = `is not a key of trust.keys, so no signature by it verifies (${known})`
      issues.push(issueAt([...path, 'key'], message))
    }
  }
  if (issues.length > 0) {
    throw new CasesError(issues.sort((a, b) => a.line - b.line || a.column - b.column))
  }
  if (!parsed.success) throw whole('does not validate')
  return parsed.data
}

// ---------------------------------------------------------------------------------------------
// Running

/** The outcome of one case. */
export interface CaseResult {
  readonly name: string
  readonly expected: Outcome
  readonly decision: Decision
  /** expectRules entries that did not fail, each with why (`acme/tags did not fail`). */
  readonly missing: readonly string[]
  readonly passed: boolean
}

function resolveWhen(w: When | undefined, now: number): string | undefined {
  if (w === undefined) return undefined
  return 'at' in w ? w.at : new Date(now - w.ageMs).toISOString()
}

function fakeDigest(text: string): Digest {
  return `sha256:${createHash('sha256').update(text).digest('hex')}` as Digest
}

function signerFacts(s: SignerInput): Pick<SignatureFact, 'kind' | 'key' | 'identity' | 'tlog'> {
  if (s.kind === 'keyed') return { kind: 'keyed', ...(s.key !== undefined ? { key: s.key } : {}) }
  const ext: Partial<Record<ExtensionName, string>> = {}
  for (const [k, v] of Object.entries(s.extensions ?? {})) {
    if (v !== undefined) ext[k as ExtensionName] = v
  }
  const issuer = s.issuer ?? ext.issuer
  return {
    kind: 'keyless',
    identity: {
      subject: s.subject ?? '',
      ...(issuer !== undefined ? { issuer } : {}),
      extensions: ext,
    },
    tlog: true,
  }
}

/** What a pull of the case's image would give evaluate(), with `now` for ages. */
export function caseInput(c: PolicyCase, now: number): EvaluationInput {
  const f = c.facts
  const ref = c.image.tag !== undefined ? `:${c.image.tag}` : ''
  const digest = (c.image.digest ??
    fakeDigest(`${c.image.upstream}/${c.image.repository}${ref}`)) as Digest
  const artifact = (what: string, i: number): Digest => fakeDigest(`${c.name} ${what} ${i}`)
  const signatures: SignatureFact[] = c.signatures.map((s, i) => ({
    source: 'referrer',
    artifact: artifact('signature', i),
    verified: s.verified,
    ...(s.verified ? {} : { reason: s.reason ?? 'the signature did not verify' }),
    ...signerFacts(s),
  }))
  const attestations: AttestationFact[] = c.attestations.map((a, i) => {
    const finishedOn = resolveWhen(a.vulnerabilities?.finishedOn, now)
    const vulnerabilities =
      a.vulnerabilities === undefined
        ? undefined
        : {
            ...(a.vulnerabilities.scanner !== undefined
              ? { scanner: a.vulnerabilities.scanner }
              : {}),
            ...(finishedOn !== undefined ? { finishedOn } : {}),
          }
    return {
      source: 'referrer',
      artifact: artifact('attestation', i),
      verified: a.verified,
      ...(a.verified ? {} : { reason: a.reason ?? 'the attestation did not verify' }),
      ...signerFacts(a.signer ?? { kind: 'keyless', subject: '' }),
      predicateType: a.predicateType,
      predicate: {
        ...(a.slsa !== undefined ? { slsa: a.slsa } : {}),
        ...(vulnerabilities !== undefined ? { vulnerabilities } : {}),
      },
    }
  })
  const platforms = [...(f.platforms ?? DEFAULT_FACTS.platforms)]
  const common = { mediaType: MEDIA_TYPES[f.kind], labels: f.labels, platforms, annotations: {} }
  return {
    upstream: c.image.upstream,
    repository: c.image.repository,
    ...(c.image.tag !== undefined ? { tag: c.image.tag } : {}),
    digest,
    image:
      f.kind === 'index'
        ? { ...common, kind: 'index' }
        : {
            ...common,
            kind: 'image',
            created:
              resolveWhen(f.created, now) ?? new Date(now - DEFAULT_FACTS.ageMs).toISOString(),
            layers: f.layers ?? DEFAULT_FACTS.layers,
            size: f.size ?? DEFAULT_FACTS.size,
            user: f.user ?? DEFAULT_FACTS.user,
          },
    verification: { signatures, attestations, notation: 0, discoveryErrors: c.discoveryErrors },
  }
}

/** Evaluates every case against the set at `now`; pure. */
export function runCases(
  set: PolicySet,
  cases: readonly PolicyCase[],
  now = Date.now()
): CaseResult[] {
  const names = new Set(set.policies.map((p) => p.name))
  return cases.map((c) => {
    const decision = evaluate(set, caseInput(c, now), now)
    const failed = new Set(
      decision.rules.filter((r) => !r.passed).map((r) => `${r.policy}/${r.rule}`)
    )
    const missing = c.expectRules
      .filter((r) => !failed.has(r))
      .map((r) => {
        const policy = r.slice(0, r.indexOf('/'))
        const known = names.has(policy) || policy === '(unmatched)'
        return known ? `${r} did not fail` : `${r} did not fail (the set has no policy ${policy})`
      })
    return {
      name: c.name,
      expected: c.expect,
      decision,
      missing,
      passed: decision.outcome === c.expect && missing.length === 0,
    }
  })
}

/**
 * `PASS name: detained`, or `FAIL name: expected cleared, got detained: <reasons>`, or
 * `FAIL name: detained as expected, but baseline/tags did not fail (failed: …)`.
 */
export function formatCaseResult(r: CaseResult): string {
  const got = r.decision.outcome
  if (r.passed) return `PASS ${r.name}: ${got}`
  const failed = r.decision.rules.filter((x) => !x.passed).map((x) => `${x.policy}/${x.rule}`)
  const rules =
    r.missing.length === 0
      ? ''
      : `${r.missing.join('; ')} (failed: ${failed.length === 0 ? 'none' : failed.join(', ')})`
  if (got === r.expected) return `FAIL ${r.name}: ${got} as expected, but ${rules}`
  const reasons = r.decision.reasons.length > 0 ? `: ${r.decision.reasons.join('; ')}` : ''
  const and = rules === '' ? '' : `; and ${rules}`
  return `FAIL ${r.name}: expected ${r.expected}, got ${got}${reasons}${and}`
}
