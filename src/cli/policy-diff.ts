// `customs policy diff DIR`: lints a policy folder locally, then asks a running Customs what would
// change if it were in force (POST /admin/v1/policy/diff), and prints a table or JSON. Nothing
// changes on the server. Exit codes follow diff(1): 0 nothing would change, 1 something would,
// 2 trouble (invalid policies, bad arguments, the server refused or could not be reached).

import { PolicyError, formatPolicyIssue, readPolicyFolder, type PolicyLoadOptions } from '../policy/load.js'
import type { DiffChange, PolicyDiff } from '../policy/diff.js'
import { policyLint, type PolicyIo } from './policy.js'

export interface PolicyDiffOptions {
  /** Where Customs listens (CUSTOMS_URL, default http://127.0.0.1:5000). */
  readonly url: string
  /** An admin token of the admin role (CUSTOMS_ADMIN_TOKEN). */
  readonly token: string | undefined
  readonly json: boolean
  /** Days of pulls (from the audit log) judged beside the cache inventory; the server's default when absent. */
  readonly days?: number
  readonly loadOptions: PolicyLoadOptions
  /** How long to wait for the answer (ms). */
  readonly timeoutMs?: number
}

export const DEFAULT_CUSTOMS_URL = 'http://127.0.0.1:5000'

export async function policyDiff(dir: string, io: PolicyIo, options: PolicyDiffOptions): Promise<number> {
  if (options.token === undefined || options.token === '') {
    io.stderr.write('an admin token is needed: --token TOKEN or CUSTOMS_ADMIN_TOKEN\n')
    return 2
  }
  let base: URL
  try {
    base = new URL(options.url)
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http')
  } catch {
    io.stderr.write(`${options.url.slice(0, 200)} is not an http(s) URL\n`)
    return 2
  }
  // The lint's summary goes to stderr: stdout carries only the diff (JSON with --json).
  if ((await policyLint(dir, { stdout: io.stderr, stderr: io.stderr }, options.loadOptions)) !== 0) return 2
  let documents
  try {
    documents = await readPolicyFolder(dir)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    for (const issue of err.issues) io.stderr.write(`${formatPolicyIssue(issue)}\n`)
    return 2
  }
  let res: Response
  try {
    res = await fetch(new URL('/admin/v1/policy/diff', base), {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ documents, ...(options.days !== undefined ? { days: options.days } : {}) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
    })
  } catch (err) {
    io.stderr.write(`cannot reach Customs at ${base.origin}: ${(err as Error).message}\n`)
    return 2
  }
  const text = await res.text()
  if (!res.ok) {
    io.stderr.write(`Customs answered ${res.status}: ${errorMessage(text)}\n`)
    return 2
  }
  const diff = JSON.parse(text) as PolicyDiff
  if (options.json) io.stdout.write(`${JSON.stringify(diff, null, 2)}\n`)
  else io.stdout.write(table(diff))
  return diff.changes.length === 0 ? 0 : 1
}

function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: Array<{ message?: string }> }
    const message = parsed.errors?.map((e) => e.message).join('; ')
    if (message) return message
  } catch {
    // not an OCI error body
  }
  return body.slice(0, 500)
}

function table(diff: PolicyDiff): string {
  const head = `revision ${diff.current} -> ${diff.candidate}: ${diff.judged} manifests judged`
  if (diff.changes.length === 0) return `${head}, nothing would change\n`
  const rows = [['IMAGE', 'DIGEST', 'TAGS', 'BEFORE', 'AFTER', 'REASONS'], ...diff.changes.map(row)]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (i === 5 ? 0 : r[i]!.length))))
  const lines = rows.map((r) => r.map((cell, i) => (i === 5 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd())
  const more = diff.truncated ? ' (list truncated)' : ''
  return `${lines.join('\n')}\n${head}, ${diff.changes.length} would change${more}\n`
}

function row(change: DiffChange): string[] {
  const short = change.digest.length > 19 ? `${change.digest.slice(0, 19)}…` : change.digest
  return [
    `${change.upstream}/${change.repository}`,
    short,
    change.tags.join(',') || '-',
    change.before,
    change.after,
    change.reasons.join('; ') || '-',
  ]
}
