// What a signature says it signs: the cosign simple-signing payload and the in-toto statement.
// A valid signature over another digest is a failure: the payload must name the very digest
// being inspected. Verified predicates become facts for policies.

import type { Digest } from '../oci/digest.js'

/** cosign v3 signs images with an in-toto statement of this predicate type. */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1'
const SIMPLE_SIGNING_TYPE = 'cosign container image signature'

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }
}

/** Why a simple-signing payload does not bind `digest`, or undefined when it does. */
export function simpleSigningMismatch(payload: Buffer, digest: Digest): string | undefined {
  const body = parseJson(payload)
  if (!isObject(body) || !isObject(body.critical)) return 'the signed payload is not a simple-signing document'
  const { critical } = body
  if (critical.type !== SIMPLE_SIGNING_TYPE) return `the signed payload's type is ${JSON.stringify(critical.type)}`
  const signed = isObject(critical.image) ? critical.image['docker-manifest-digest'] : undefined
  if (signed !== digest) return `the signature is over ${JSON.stringify(signed)}, not ${digest}`
  return undefined
}

/** The predicateType a statement declares, whatever it is about: for sorting, not trusting. */
export function declaredPredicateType(payload: Buffer): string | undefined {
  const body = parseJson(payload)
  return isObject(body) && typeof body.predicateType === 'string' ? body.predicateType.slice(0, 512) : undefined
}

export interface Statement {
  readonly predicateType: string
  readonly predicate: unknown
}

/**
 * Parses an in-toto statement and checks that one subject names `digest`; returns the reason
 * when not.
 */
export function parseStatement(payload: Buffer, digest: Digest): Statement | string {
  const body = parseJson(payload)
  if (!isObject(body)) return 'the signed payload is not an in-toto statement'
  if (typeof body._type !== 'string' || !body._type.startsWith('https://in-toto.io/Statement/')) {
    return `the statement type is ${JSON.stringify(body._type)}`
  }
  if (typeof body.predicateType !== 'string') return 'the statement has no predicateType'
  const [algorithm, hex] = digest.split(':') as [string, string]
  const subjects = Array.isArray(body.subject) ? body.subject : []
  const bound = subjects.some((s) => isObject(s) && isObject(s.digest) && s.digest[algorithm] === hex)
  if (!bound) return `no subject of the statement is ${digest}`
  return { predicateType: body.predicateType, predicate: body.predicate }
}

/** What policies can ask of a verified predicate, by predicate family. */
export interface PredicateFacts {
  readonly slsa?: { readonly builderId?: string; readonly sourceUri?: string }
  readonly sbom?: { readonly format: 'spdx' | 'cyclonedx' }
  readonly vulnerabilities?: {
    readonly scanner?: string
    readonly finishedOn?: string
    /** The findings read from the scanner's result (Trivy and Grype layouts), bounded. */
    readonly findings?: ReadonlyArray<{ readonly id: string; readonly severity: string }>
  }
}

const SBOM_TYPES: Record<string, 'spdx' | 'cyclonedx'> = {
  'https://spdx.dev/Document': 'spdx',
  'https://cyclonedx.org/bom': 'cyclonedx',
}

export function predicateFacts(statement: Statement): PredicateFacts {
  const p = isObject(statement.predicate) ? statement.predicate : {}
  const type = statement.predicateType
  if (type.startsWith('https://slsa.dev/provenance/')) {
    const v02Builder = isObject(p.builder) ? p.builder.id : undefined
    const run = isObject(p.runDetails) ? p.runDetails : {}
    const v1Builder = isObject(run.builder) ? run.builder.id : undefined
    const invocation = isObject(p.invocation) && isObject(p.invocation.configSource) ? p.invocation.configSource.uri : undefined
    const build = isObject(p.buildDefinition) ? p.buildDefinition : {}
    const deps = Array.isArray(build.resolvedDependencies) ? build.resolvedDependencies : []
    const v1Source = isObject(deps[0]) ? deps[0].uri : undefined
    const builderId = str(v1Builder) ?? str(v02Builder)
    const sourceUri = str(v1Source) ?? str(invocation)
    return { slsa: { ...(builderId ? { builderId } : {}), ...(sourceUri ? { sourceUri } : {}) } }
  }
  const sbom = SBOM_TYPES[type]
  if (sbom !== undefined) return { sbom: { format: sbom } }
  if (type === 'https://cosign.sigstore.dev/attestation/vuln/v1') {
    const scanner = isObject(p.scanner) ? p.scanner : {}
    const metadata = isObject(p.metadata) ? p.metadata : {}
    const name = str(scanner.uri)
    const finishedOn = str(metadata.scanFinishedOn)
    return {
      vulnerabilities: { ...(name ? { scanner: name } : {}), ...(finishedOn ? { finishedOn } : {}), findings: findingsOf(scanner.result) },
    }
  }
  return {}
}

/** At most this many findings are kept per scan. */
const MAX_FINDINGS = 10_000

/**
 * Findings from a scanner result: Trivy's `Results[].Vulnerabilities[]` (VulnerabilityID,
 * Severity) or Grype's `matches[].vulnerability` (id, severity). Severities lower-cased.
 */
function findingsOf(result: unknown): Array<{ id: string; severity: string }> {
  const out: Array<{ id: string; severity: string }> = []
  const add = (id: unknown, severity: unknown) => {
    if (out.length < MAX_FINDINGS && typeof id === 'string' && typeof severity === 'string') {
      out.push({ id: id.slice(0, 128), severity: severity.toLowerCase().slice(0, 16) })
    }
  }
  if (!isObject(result)) return out
  for (const r of Array.isArray(result.Results) ? result.Results : []) {
    if (!isObject(r) || !Array.isArray(r.Vulnerabilities)) continue
    for (const v of r.Vulnerabilities) if (isObject(v)) add(v.VulnerabilityID, v.Severity)
  }
  for (const m of Array.isArray(result.matches) ? result.matches : []) {
    if (isObject(m) && isObject(m.vulnerability)) add(m.vulnerability.id, m.vulnerability.severity)
  }
  return out
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v.slice(0, 2048) : undefined
}
