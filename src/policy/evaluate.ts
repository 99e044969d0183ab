// Policy evaluation: pure and synchronous, over facts gathered beforehand. Every matching policy
// must pass (AND); within a policy any `authoritiesRequired` of its authorities suffice (OR, or
// k of n). Exceptions waive named policies or rules until they expire. Enforcing failures detain;
// audit failures clear with warnings; the outcome of every rule is kept for people to read.

import type { ImageFacts } from '../inspection/facts.js'
import { identityMismatch } from '../verify/identity.js'
import type { AttestationFact, SignatureFact, VerificationFacts } from '../verify/facts.js'
import type { CompiledAttestation, CompiledAuthority, CompiledMatch, CompiledPolicy, PolicySet } from './types.js'

export type Outcome = 'cleared' | 'cleared-with-warnings' | 'detained'

/** What a pull is: the image asked for, how, and what is known of it. */
export interface EvaluationInput {
  readonly upstream: string
  readonly repository: string
  /** The tag the client asked for; absent for pulls by digest. */
  readonly tag?: string
  readonly digest: string
  readonly image: ImageFacts
  /** Absent when nothing was verified (an artifact, or verification not configured). */
  readonly verification?: VerificationFacts
}

export interface RuleOutcome {
  readonly policy: string
  readonly rule: string
  readonly passed: boolean
  readonly reason?: string
  /** The exception that waived this failure. */
  readonly waivedBy?: string
  readonly mode: 'enforce' | 'audit'
}

export interface Decision {
  readonly outcome: Outcome
  /** One line per failure that counts (enforced, or audited), `policy 'p' rule 'r': why`. */
  readonly reasons: readonly string[]
  readonly rules: readonly RuleOutcome[]
  /** The policies that matched, in order. */
  readonly policies: readonly string[]
}

interface Failure {
  readonly rule: string
  readonly reason: string
}

export function evaluate(set: PolicySet, input: EvaluationInput, now = Date.now()): Decision {
  const matched = set.policies.filter((p) => p.match.some((m) => matches(m, input)))
  const rules: RuleOutcome[] = []
  const reasons: string[] = []
  let enforced = false
  let audited = false
  // An image is admitted by a matching policy that names who may sign it (a static pass
  // included); policies with rules only constrain. Images nothing admits are "unmatched".
  if (set.unmatched !== 'allow' && !matched.some((p) => p.authorities.length > 0)) {
    const reason = `no policy admits ${input.upstream}/${input.repository}`
    const mode = set.unmatched === 'deny' ? 'enforce' : 'audit'
    rules.push({ policy: '(unmatched)', rule: 'match', passed: false, reason, mode })
    reasons.push(reason)
    if (mode === 'enforce') enforced = true
    else audited = true
  }
  const exceptions = set.exceptions.filter((e) => e.expires > now && e.images.some((m) => matches(m, input) && (m.digest === undefined || m.digest === input.digest)))
  for (const policy of matched) {
    const failures = check(policy, input, now)
    const checked = new Set(failures.map((f) => f.rule))
    for (const rule of ruleNames(policy)) {
      if (!checked.has(rule)) rules.push({ policy: policy.name, rule, passed: true, mode: policy.mode })
    }
    for (const f of failures) {
      const waiver = exceptions.find((e) => e.waives.some((w) => w.policy === policy.name && (w.rules === undefined || w.rules.includes(f.rule))))
      rules.push({ policy: policy.name, rule: f.rule, passed: false, reason: f.reason, mode: policy.mode, ...(waiver ? { waivedBy: waiver.name } : {}) })
      if (waiver !== undefined) continue
      reasons.push(`policy '${policy.name}' rule '${f.rule}': ${f.reason}`)
      if (policy.mode === 'enforce') enforced = true
      else audited = true
    }
  }
  return {
    outcome: enforced ? 'detained' : audited ? 'cleared-with-warnings' : 'cleared',
    reasons,
    rules,
    policies: matched.map((p) => p.name),
  }
}

export function matches(m: CompiledMatch, input: { upstream: string; repository: string; tag?: string }): boolean {
  if (m.upstream !== undefined && m.upstream !== input.upstream) return false
  if (!m.repository(input.repository)) return false
  if (m.tags !== undefined) return input.tag !== undefined && m.tags(input.tag)
  return true
}

/** The rule names a policy checks, for reporting passes as well as failures. */
function ruleNames(p: CompiledPolicy): string[] {
  const names: string[] = []
  if (p.authorities.length > 0) names.push('authorities')
  if (p.attestations.length > 0) names.push('attestations')
  const r = p.rules
  if (r.tags !== undefined) names.push('tags')
  if (r.digests !== undefined) names.push('digests')
  if (r.maxAgeMs !== undefined) names.push('maxAge')
  if (r.labels !== undefined) names.push('labels')
  if (r.platforms !== undefined) names.push('platforms')
  if (r.maxLayers !== undefined) names.push('maxLayers')
  if (r.maxSizeBytes !== undefined) names.push('maxSize')
  if (r.nonRoot === true) names.push('nonRoot')
  if (r.cel !== undefined) names.push('cel')
  return names
}

function check(p: CompiledPolicy, input: EvaluationInput, now: number): Failure[] {
  const failures: Failure[] = []
  const v = input.verification
  // Trust material or artifacts could not be had: the policy's choice, deny by default.
  const unavailable = v !== undefined && v.discoveryErrors.length > 0 ? v.discoveryErrors.join('; ') : undefined
  if (p.authorities.length > 0) {
    const satisfied = p.authorities.filter((a) => satisfiedBy(a, v?.signatures ?? []))
    if (satisfied.length < p.authoritiesRequired) {
      const tolerated = unavailable !== undefined && p.onVerifierUnavailable === 'allow'
      if (!tolerated) failures.push({ rule: 'authorities', reason: signatureReason(p, v, satisfied.length, unavailable) })
    }
  }
  for (const a of p.attestations) {
    const reason = attestationFailure(a, v?.attestations ?? [], now)
    const tolerated = unavailable !== undefined && p.onVerifierUnavailable === 'allow'
    if (reason !== undefined && !tolerated) {
      failures.push({ rule: 'attestations', reason: `${a.name}: ${unavailable !== undefined ? `${reason} (verifier unavailable: ${unavailable})` : reason}` })
    }
  }
  failures.push(...ruleFailures(p, input, now))
  return failures
}

function satisfiedBy(a: CompiledAuthority, signatures: readonly SignatureFact[]): boolean {
  switch (a.kind) {
    case 'static':
      return a.action === 'pass'
    case 'key':
      return signatures.some((s) => s.verified && s.kind === 'keyed' && s.key === a.key)
    case 'keyless':
      return signatures.some(
        (s) =>
          s.verified &&
          s.kind === 'keyless' &&
          s.identity !== undefined &&
          identityMismatch(s.identity, {
            issuer: a.issuer,
            ...(a.subject !== undefined ? { subject: a.subject } : {}),
            ...(a.subjectRegExp !== undefined ? { subjectRegExp: a.subjectRegExp } : {}),
            ...(a.extensions !== undefined ? { extensions: a.extensions } : {}),
          }) === undefined
      )
  }
}

function signatureReason(p: CompiledPolicy, v: VerificationFacts | undefined, satisfied: number, unavailable: string | undefined): string {
  const want = p.authoritiesRequired > 1 ? `${p.authoritiesRequired} of the authorities` : `an authority (${p.authorities.map((a) => a.name).join(', ')})`
  const sigs = v?.signatures ?? []
  const verified = sigs.filter((s) => s.verified)
  let found: string
  if (sigs.length === 0) found = 'no signature was found'
  else if (verified.length === 0) found = `${sigs.length} signature(s) found, none valid: ${sigs.map((s) => s.reason).join('; ')}`
  else found = `verified signer(s) ${verified.map((s) => s.identity?.subject ?? s.key ?? '?').join(', ')} match no authority`
  const tail = unavailable !== undefined ? `; verifier unavailable: ${unavailable}` : ''
  return `needs a verified signature from ${want}, ${satisfied} satisfied: ${found}${tail}`
}

function attestationFailure(a: CompiledAttestation, attestations: readonly AttestationFact[], now: number): string | undefined {
  const candidates = attestations.filter((x) => x.predicateType === a.predicateType)
  if (candidates.length === 0) return `no ${a.predicateType} attestation was found`
  const verified = candidates.filter((x) => x.verified && (a.authorities === undefined || a.authorities.some((auth) => satisfiedBy(auth, [x]))))
  if (verified.length === 0) {
    return `no ${a.predicateType} attestation is verified from an allowed signer: ${candidates.map((c) => c.reason ?? 'signer not allowed').join('; ')}`
  }
  const problems: string[] = []
  for (const x of verified) {
    const slsa = x.predicate?.slsa
    if (a.slsa?.builderId !== undefined && slsa?.builderId !== a.slsa.builderId) {
      problems.push(`builder ${JSON.stringify(slsa?.builderId ?? null)} is not ${a.slsa.builderId}`)
      continue
    }
    if (a.slsa?.sourceUri !== undefined && slsa?.sourceUri !== a.slsa.sourceUri) {
      problems.push(`source ${JSON.stringify(slsa?.sourceUri ?? null)} is not ${a.slsa.sourceUri}`)
      continue
    }
    const failOn = a.vulnerabilities?.failOn
    if (failOn !== undefined) {
      const threshold = SEVERITY[failOn] ?? 4
      const allow = a.vulnerabilities?.allow
      const findings = x.predicate?.vulnerabilities?.findings
      if (findings === undefined) {
        problems.push('the vulnerability scan lists no findings Customs can read')
        continue
      }
      const blocking = findings.filter((f) => (SEVERITY[f.severity] ?? 4) >= threshold && !allow?.has(f.id))
      if (blocking.length > 0) {
        const ids = blocking.slice(0, 5).map((f) => `${f.id} (${f.severity})`).join(', ')
        problems.push(`${blocking.length} finding(s) at or above ${failOn}: ${ids}${blocking.length > 5 ? ', ...' : ''}`)
        continue
      }
    }
    if (a.vulnerabilities?.maxAgeMs !== undefined) {
      const finished = Date.parse(x.predicate?.vulnerabilities?.finishedOn ?? '')
      if (!Number.isFinite(finished) || now - finished > a.vulnerabilities.maxAgeMs) {
        problems.push(`the vulnerability scan is older than allowed (${x.predicate?.vulnerabilities?.finishedOn ?? 'no time'})`)
        continue
      }
    }
    return undefined
  }
  return problems.join('; ')
}

/** Severity order; an unknown severity counts as critical (fail closed). */
const SEVERITY: Record<string, number> = { negligible: 0, unknown: 4, low: 1, medium: 2, moderate: 2, high: 3, important: 3, critical: 4 }

const ROOT_USERS = new Set(['', 'root', '0', '0:0', 'root:root', 'root:0', '0:root'])

/** The CEL variables of an input, built once per evaluation however many policies use CEL. */
const celCache = new WeakMap<EvaluationInput, Record<string, unknown>>()
function celFactsOnce(input: EvaluationInput): Record<string, unknown> {
  let facts = celCache.get(input)
  if (facts === undefined) {
    facts = celFacts(input)
    celCache.set(input, facts)
  }
  return facts
}

function ruleFailures(p: CompiledPolicy, input: EvaluationInput, now: number): Failure[] {
  const r = p.rules
  const img = input.image
  const out: Failure[] = []
  if (r.tags !== undefined && input.tag !== undefined) {
    if (r.tags.deny?.(input.tag)) out.push({ rule: 'tags', reason: `tag ${input.tag} is denied` })
    else if (r.tags.allow !== undefined && !r.tags.allow(input.tag)) out.push({ rule: 'tags', reason: `tag ${input.tag} is not allowed` })
  }
  if (r.digests !== undefined) {
    if (r.digests.deny?.has(input.digest)) out.push({ rule: 'digests', reason: `digest ${input.digest} is denied` })
    else if (r.digests.allow !== undefined && !r.digests.allow.has(input.digest)) out.push({ rule: 'digests', reason: `digest ${input.digest} is not allowed` })
  }
  if (r.maxAgeMs !== undefined && img.kind === 'image') {
    const created = Date.parse(img.created ?? '')
    if (!Number.isFinite(created)) out.push({ rule: 'maxAge', reason: 'the image has no creation time' })
    else if (now - created > r.maxAgeMs) out.push({ rule: 'maxAge', reason: `the image was created ${img.created}, longer ago than allowed` })
  }
  if (r.labels !== undefined) {
    for (const l of r.labels) {
      const value = img.labels[l.name] ?? img.annotations[l.name]
      if (value === undefined) out.push({ rule: 'labels', reason: `label ${l.name} is missing` })
      else if (!l.value(value)) out.push({ rule: 'labels', reason: `label ${l.name}=${JSON.stringify(value)} does not match ${l.pattern}` })
    }
  }
  if (r.platforms !== undefined && img.platforms.length > 0) {
    const allowed = img.platforms.filter((pl) => r.platforms?.has(pl) || r.platforms?.has(pl.split('/').slice(0, 2).join('/')))
    // An image must be of an allowed platform; an index must offer at least one.
    const ok = img.kind === 'image' ? allowed.length === img.platforms.length : allowed.length > 0
    if (!ok) out.push({ rule: 'platforms', reason: `platform ${img.platforms.join(', ')} is not allowed` })
  }
  if (r.maxLayers !== undefined && img.layers !== undefined && img.layers > r.maxLayers) {
    out.push({ rule: 'maxLayers', reason: `${img.layers} layers, more than ${r.maxLayers}` })
  }
  if (r.maxSizeBytes !== undefined && img.size !== undefined && img.size > r.maxSizeBytes) {
    out.push({ rule: 'maxSize', reason: `${img.size} bytes, more than ${r.maxSizeBytes}` })
  }
  if (r.nonRoot === true && img.kind === 'image' && ROOT_USERS.has((img.user ?? '').trim())) {
    out.push({ rule: 'nonRoot', reason: `the image runs as ${JSON.stringify(img.user ?? '')} (root)` })
  }
  if (r.cel !== undefined) {
    let result: unknown
    try {
      result = r.cel.evaluate(celFactsOnce(input))
    } catch (err) {
      result = err instanceof Error ? err : new Error(String(err))
    }
    if (result !== true) {
      out.push({ rule: 'cel', reason: result instanceof Error ? `${r.cel.source} failed: ${result.message}` : `${r.cel.source} is ${JSON.stringify(result)}` })
    }
  }
  return out
}

/** The variables a CEL expression sees (documented in policy/cel.ts). */
export function celFacts(input: EvaluationInput): Record<string, unknown> {
  const img = input.image
  return {
    image: {
      upstream: input.upstream,
      repository: input.repository,
      tag: input.tag ?? '',
      digest: input.digest,
      mediaType: img.mediaType,
      created: img.created ?? '',
      labels: { ...img.annotations, ...img.labels },
      platforms: [...img.platforms],
      layers: BigInt(img.layers ?? 0),
      size: BigInt(img.size ?? 0),
      user: img.user ?? '',
    },
    signatures: (input.verification?.signatures ?? []).map((s) => ({
      verified: s.verified,
      kind: s.kind ?? '',
      key: s.key ?? '',
      subject: s.identity?.subject ?? '',
      issuer: s.identity?.issuer ?? '',
    })),
    attestations: (input.verification?.attestations ?? []).map((a) => ({ verified: a.verified, predicateType: a.predicateType ?? '' })),
  }
}

