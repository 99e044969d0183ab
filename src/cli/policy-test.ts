// `customs policy test DIR --cases FILE`: a folder's policies decide a file of described images
// offline, one PASS/FAIL line each, like `kyverno test`. `customs policy test DIR --image REF`:
// one real image is fetched from its upstream and inspected as a pull would be (signatures
// verified with the configuration's trust), and the verdict is printed with every rule's outcome.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Config } from '../config/schema.js'
import { formatBytes } from '../config/units.js'
import { CustomsError, isCustomsError } from '../errors.js'
import { readFailure, readTextBounded } from '../files.js'
import type { ImageFacts } from '../inspection/facts.js'
import type { Logger } from '../observability/logger.js'
import { createLogger } from '../observability/logger.js'
import { Metrics } from '../observability/metrics.js'
import { isDigest, parseDigest, type Digest } from '../oci/digest.js'
import { isTag, type Reference } from '../oci/reference.js'
import { CasesError, formatCaseResult, parseCases, runCases } from '../policy/cases.js'
import { evaluate, type Decision } from '../policy/evaluate.js'
import { formatPolicyIssue, loadPolicies, MAX_POLICY_FILE_BYTES, PolicyError } from '../policy/load.js'
import type { PolicyLoadOptions } from '../policy/load.js'
import type { PolicySet } from '../policy/types.js'
import { createServices, type Services } from '../services.js'
import { MemoryStateStore } from '../state/memory.js'
import type { VerdictOutcome } from '../state/store.js'
import type { AttestationFact, SignatureFact, VerificationFacts } from '../verify/facts.js'
import type { PolicyIo } from './policy.js'

/** Exit codes: 0 as expected (or cleared), 1 a mismatch (or detained), 2 usage or setup. */
const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

/**
 * Loads the set as lint does, printing its warnings; on a set that does not validate, prints every
 * problem and returns undefined.
 */
async function loadSet(
  dir: string,
  io: PolicyIo,
  options: PolicyLoadOptions
): Promise<PolicySet | undefined> {
  try {
    const set = await loadPolicies(dir, options)
    for (const warning of set.warnings ?? []) {
      io.stderr.write(`warning: ${formatPolicyIssue(warning)}\n`)
    }
    return set
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    io.stderr.write(`${err.message}\n${dir}: invalid policies (${plural(err.issues.length)})\n`)
    return undefined
  }
}

function plural(n: number): string {
  return `${n} ${n === 1 ? 'problem' : 'problems'}`
}

// ---------------------------------------------------------------------------------------------
// --cases

/**
 * Runs the cases in `casesFile` against the policies under `dir`, offline. Prints one line per
 * case and a summary on stdout. Returns 0 when every case passed, 1 when one did not, 2 when the
 * policies or the cases file do not validate (every problem on stderr).
 */
export async function policyTestCases(
  dir: string,
  casesFile: string,
  io: PolicyIo,
  options: PolicyLoadOptions & { readonly now?: number }
): Promise<number> {
  const set = await loadSet(dir, io, options)
  if (set === undefined) return EXIT_USAGE
  let text: string
  try {
    // Bounded as a policy file is: a cases file is written by the same people, at the same scale.
    text = await readTextBounded(casesFile, MAX_POLICY_FILE_BYTES)
  } catch (err) {
    io.stderr.write(`${casesFile}:1:1: cannot read the cases file (${readFailure(err)})\n`)
    return EXIT_USAGE
  }
  let cases
  try {
    cases = parseCases(text, casesFile, options)
  } catch (err) {
    if (!(err instanceof CasesError)) throw err
    io.stderr.write(`${err.message}\n${casesFile}: invalid cases (${plural(err.issues.length)})\n`)
    return EXIT_USAGE
  }
  const results = runCases(set, cases, options.now ?? Date.now())
  for (const r of results) io.stdout.write(`${formatCaseResult(r)}\n`)
  const failed = results.filter((r) => !r.passed).length
  const summary = `${results.length} ${results.length === 1 ? 'case' : 'cases'}`
  io.stdout.write(`${summary}: ${results.length - failed} passed, ${failed} failed\n`)
  return failed === 0 ? EXIT_OK : EXIT_FAILED
}

// ---------------------------------------------------------------------------------------------
// --image

/** `name[:tag|@digest]` split; the tag defaults to latest. Throws CustomsError when malformed. */
export function parseImageReference(ref: string): { name: string; reference: Reference } {
  const at = ref.indexOf('@')
  if (at !== -1) {
    const digest = parseDigest(ref.slice(at + 1))
    // `name:tag@digest` pulls by digest, as docker does: the tag is not what is fetched.
    const named = ref.slice(0, at)
    const colon = named.indexOf(':', named.lastIndexOf('/') + 1)
    return {
      name: colon === -1 ? named : named.slice(0, colon),
      reference: { kind: 'digest', digest },
    }
  }
  const colon = ref.indexOf(':', ref.lastIndexOf('/') + 1)
  if (colon === -1) return { name: ref, reference: { kind: 'tag', tag: 'latest' } }
  const tag = ref.slice(colon + 1)
  if (!isTag(tag)) {
    throw new CustomsError('TAG_INVALID', `invalid tag ${JSON.stringify(tag.slice(0, 200))}`)
  }
  return { name: ref.slice(0, colon), reference: { kind: 'tag', tag } }
}

export interface ImageTestOptions {
  /** The configuration: upstreams (and their credentials), trust roots and keys. */
  readonly config: Config
  /** Where relative trust file paths are resolved: the configuration file's folder. */
  readonly baseDir?: string
  /** Silent by default; the command passes one writing errors to stderr. */
  readonly logger?: Logger
}

/**
 * Inspects the image `ref` through the same path as a pull (upstream fetch, signature discovery
 * and verification, image facts, the verdict), with the policies under `dir` and a memory state;
 * what it fetches goes to a temp folder removed afterwards, never the configured storage. Prints
 * the verdict, every rule's outcome, and the signatures and attestations found. Returns 0 when
 * cleared (with warnings or not), 1 when detained, 2 when the image could not be inspected or
 * the policies or configuration do not validate.
 */
export async function policyTestImage(
  dir: string,
  ref: string,
  io: PolicyIo,
  options: ImageTestOptions
): Promise<number> {
  const { config } = options
  let parsed: { name: string; reference: Reference }
  try {
    parsed = parseImageReference(ref)
  } catch (err) {
    if (!isCustomsError(err)) throw err
    io.stderr.write(`${ref}: ${err.message}\n`)
    return EXIT_USAGE
  }
  const set = await loadSet(dir, io, {
    keyNames: new Set(config.trust.keys.map((k) => k.name)),
    upstreams: new Set(config.upstreams.map((u) => u.name)),
  })
  if (set === undefined) return EXIT_USAGE
  const storage = await mkdtemp(join(tmpdir(), 'customs-policy-test-'))
  let services: Services | undefined
  try {
    try {
      services = await createServices(
        {
          ...config,
          storage: { ...config.storage, path: storage },
          policy: { ...config.policy, watch: false },
        },
        options.logger ?? createLogger({ level: 'silent' }),
        {
          policies: set,
          state: new MemoryStateStore(),
          metrics: new Metrics(),
          ...(options.baseDir !== undefined ? { baseDir: options.baseDir } : {}),
        }
      )
    } catch (err) {
      // Trust files that cannot be read or parsed: a setup problem, like a bad configuration.
      io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
      return EXIT_USAGE
    }
    return await inspectAndReport(services, set, ref, parsed, io)
  } finally {
    await services?.close().catch(() => undefined)
    await rm(storage, { recursive: true, force: true })
  }
}

async function inspectAndReport(
  services: Services,
  set: PolicySet,
  ref: string,
  parsed: { name: string; reference: Reference },
  io: PolicyIo
): Promise<number> {
  let route
  try {
    route = services.router.route(parsed.name, undefined)
  } catch (err) {
    if (!isCustomsError(err)) throw err
    io.stderr.write(`${ref}: ${err.message}\n`)
    return EXIT_USAGE
  }
  const repo = { upstream: route.upstream, repository: route.repository }
  let verdict: VerdictOutcome
  let digest: Digest
  try {
    const answer = await services.manifests.get({
      repo,
      reference: parsed.reference,
      method: 'GET',
      accept: null,
    })
    verdict = answer.verdict as VerdictOutcome
    digest = answer.digest
  } catch (err) {
    const denied = isCustomsError(err, 'DENIED') ? deniedDigest(err.detail) : undefined
    if (denied === undefined) {
      const message = err instanceof Error ? err.message : String(err)
      io.stderr.write(`${ref}: cannot inspect: ${message}\n`)
      return EXIT_USAGE
    }
    verdict = 'detained'
    digest = denied
  }
  const tag = parsed.reference.kind === 'tag' ? parsed.reference.tag : undefined
  const asked = `${repo.upstream}/${repo.repository}${tag !== undefined ? `:${tag}` : ''}`
  io.stdout.write(`${asked}\n  digest ${digest}\n`)
  const record = await services.state.getManifest(repo, digest)
  if (record?.image !== undefined) io.stdout.write(`  image ${describeImage(record.image)}\n`)
  io.stdout.write(`verdict: ${verdict}\n`)
  if (record?.image !== undefined) {
    const decision = evaluate(set, {
      ...repo,
      ...(tag !== undefined ? { tag } : {}),
      digest,
      image: record.image,
      ...(record.facts !== undefined ? { verification: record.facts } : {}),
    })
    printRules(decision, set, io)
    if (decision.outcome !== verdict) {
      io.stdout.write(
        `note: evaluated again with the tag, the rules give ${decision.outcome}; ` +
          `a pull gets ${verdict}\n`
      )
    }
  }
  printFacts(record?.facts, io)
  return verdict === 'detained' ? EXIT_FAILED : EXIT_OK
}

/** The digest a DENIED error's detail names (ManifestService puts it there). */
function deniedDigest(detail: unknown): Digest | undefined {
  const digest = (detail as { digest?: unknown } | undefined)?.digest
  return typeof digest === 'string' && isDigest(digest) ? digest : undefined
}

/** `linux/amd64, 2 layers, 5.2KiB, created 2024-01-01T00:00:00Z, user "" (root)` */
function describeImage(image: ImageFacts): string {
  const parts: string[] = [image.kind === 'index' ? 'index' : 'image']
  parts.push(image.platforms.length > 0 ? image.platforms.join(' ') : 'no platform')
  if (image.layers !== undefined)
    parts.push(`${image.layers} ${image.layers === 1 ? 'layer' : 'layers'}`)
  if (image.size !== undefined) parts.push(formatBytes(image.size))
  if (image.kind === 'image') {
    parts.push(`created ${image.created ?? 'unknown'}`)
    const user = image.user ?? ''
    parts.push(`user ${JSON.stringify(user)}${user.trim() === '' ? ' (root)' : ''}`)
  }
  return parts.join(', ')
}

const UNMATCHED = { allow: 'allowed', audit: 'audited', deny: 'denied' } as const

function printRules(decision: Decision, set: PolicySet, io: PolicyIo): void {
  if (decision.rules.length === 0) {
    const why =
      set.policies.length === 0
        ? 'the set has no policies'
        : `no policy matches; unmatched images are ${UNMATCHED[set.unmatched]}`
    io.stdout.write(`rules: none (${why})\n`)
    return
  }
  io.stdout.write('rules:\n')
  for (const r of decision.rules) {
    const state = r.passed ? 'passed' : r.waivedBy !== undefined ? 'waived' : 'failed'
    const audit = !r.passed && r.mode === 'audit' ? ' (audit)' : ''
    const reason = r.reason !== undefined ? `: ${r.reason}` : ''
    const waiver = r.waivedBy !== undefined ? ` (exception ${r.waivedBy})` : ''
    io.stdout.write(`  ${state.padEnd(6)}  ${r.policy}/${r.rule}${audit}${reason}${waiver}\n`)
  }
}

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest
}

/** `keyless https://github.com/… (issuer https://token…)` or `keyed release` */
function signerOf(s: SignatureFact): string {
  if (s.kind === 'keyed') return `keyed ${s.key ?? '?'}`
  if (s.kind === 'keyless') {
    const issuer = s.identity?.issuer !== undefined ? ` (issuer ${s.identity.issuer})` : ''
    return `keyless ${s.identity?.subject ?? '?'}${issuer}`
  }
  return 'unknown signer'
}

function describeSignature(s: SignatureFact): string {
  const from = `from ${s.source} ${short(s.artifact)}`
  if (!s.verified) {
    const who = s.kind !== undefined ? ` ${signerOf(s)}` : ''
    return `failed  ${from}${who}: ${s.reason ?? 'not verified'}`
  }
  const root = s.root !== undefined ? `, root ${s.root}` : ''
  const tlog = s.tlog === true ? ', in the log' : ''
  return `verified ${signerOf(s)} ${from}${root}${tlog}`
}

function describeAttestation(a: AttestationFact): string {
  const slsa = a.predicate?.slsa
  const details: string[] = []
  if (slsa?.builderId !== undefined) details.push(`builder ${slsa.builderId}`)
  if (slsa?.sourceUri !== undefined) details.push(`source ${slsa.sourceUri}`)
  const scan = a.predicate?.vulnerabilities?.finishedOn
  if (scan !== undefined) details.push(`scanned ${scan}`)
  const tail = details.length > 0 ? `; ${details.join(', ')}` : ''
  return `${a.predicateType ?? '(no predicate type)'}: ${describeSignature(a)}${tail}`
}

function printFacts(facts: VerificationFacts | undefined, io: PolicyIo): void {
  if (facts === undefined) {
    io.stdout.write('signatures: not looked up (an artifact, or verification is off)\n')
    return
  }
  if (facts.inheritedFrom !== undefined) {
    io.stdout.write(`signatures inherited from the index ${facts.inheritedFrom}\n`)
  }
  const list = <T>(title: string, items: readonly T[], line: (item: T) => string): void => {
    io.stdout.write(`${title}: ${items.length === 0 ? 'none found' : items.length}\n`)
    for (const item of items) io.stdout.write(`  ${line(item)}\n`)
  }
  list('signatures', facts.signatures, describeSignature)
  list('attestations', facts.attestations, describeAttestation)
  if (facts.notation > 0) {
    io.stdout.write(`notation signatures: ${facts.notation} (recognised, not verified)\n`)
  }
  if (facts.discoveryErrors.length > 0) list('discovery problems', facts.discoveryErrors, String)
}
