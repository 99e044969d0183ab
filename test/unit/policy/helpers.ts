// Shared by the policy tests: documents written inline, and the issues a set is refused with,
// each checked to be positioned (file, line, column) whatever the test asserts about it.

import assert from 'node:assert/strict'
import { parsePolicyDocuments, PolicyError } from '../../../src/policy/load.js'
import type {
  PolicyFile,
  PolicyIssue,
  PolicyIssueCode,
  PolicyLoadOptions,
} from '../../../src/policy/load.js'
import type { PolicySet } from '../../../src/policy/types.js'

export const KEYS: ReadonlySet<string> = new Set(['release'])
export const OPTIONS: PolicyLoadOptions = { keyNames: KEYS, now: () => Date.UTC(2026, 0, 1) }

/** A text without the indentation common to its lines, and without its first and last blank line. */
export function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = strings.reduce(
    (out, s, i) => out + s + (i < values.length ? String(values[i]) : ''),
    ''
  )
  const lines = text
    .replace(/^\n/, '')
    .replace(/\n[ ]*$/, '')
    .split('\n')
  const indent = Math.min(
    ...lines.filter((l) => l.trim() !== '').map((l) => l.match(/^ */)?.[0].length ?? 0)
  )
  return `${lines.map((l) => l.slice(indent)).join('\n')}\n`
}

/** One file, or several keyed by path. */
export type Files = string | Readonly<Record<string, string | Uint8Array>>

function toFiles(files: Files): PolicyFile[] {
  if (typeof files === 'string') return [{ path: 'policy.yaml', text: files }]
  return Object.entries(files).map(([path, text]) => ({ path, text }))
}

export function load(files: Files, options: PolicyLoadOptions = OPTIONS): PolicySet {
  return parsePolicyDocuments(toFiles(files), options)
}

/** Every issue must say where it is; this is checked for every refused set in the tests. */
export function assertPositioned(issues: readonly PolicyIssue[]): void {
  assert.ok(issues.length > 0, 'a PolicyError has at least one issue')
  for (const issue of issues) {
    assert.ok(issue.file !== '', `issue without a file: ${JSON.stringify(issue)}`)
    assert.ok(Number.isInteger(issue.line) && issue.line >= 1, `bad line: ${JSON.stringify(issue)}`)
    assert.ok(
      Number.isInteger(issue.column) && issue.column >= 1,
      `bad column: ${JSON.stringify(issue)}`
    )
  }
}

/** The issues of the PolicyError that loading throws; fails the test when nothing is thrown. */
export function issuesOf(
  files: Files,
  options: PolicyLoadOptions = OPTIONS
): readonly PolicyIssue[] {
  try {
    load(files, options)
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${String(err)}`)
    assertPositioned(err.issues)
    return err.issues
  }
  assert.fail('expected a PolicyError')
}

/** The one issue with this code (and path, when given). */
export function only(
  issues: readonly PolicyIssue[],
  code: PolicyIssueCode,
  path?: string
): PolicyIssue {
  const found = issues.filter((i) => i.code === code && (path === undefined || i.path === path))
  assert.equal(
    found.length,
    1,
    `one ${code} issue at ${path ?? 'any path'} in ${JSON.stringify(issues, null, 1)}`
  )
  return found[0] as PolicyIssue
}

/** `apiVersion`, `kind` and `metadata` on lines 1-3, `spec:` on line 4: spec lines start at 5. */
export function policyDoc(name: string, spec: string): string {
  const body = spec
    .trimEnd()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')
  return `apiVersion: customs.dev/v1\nkind: ImagePolicy\nmetadata: { name: ${name} }\nspec:\n${body}\n`
}

export function exceptionDoc(name: string, spec: string): string {
  return policyDoc(name, spec).replace('kind: ImagePolicy', 'kind: PolicyException')
}

/** The smallest valid policy. */
export function minimalPolicy(name = 'baseline'): string {
  return policyDoc(name, 'match: [{ repository: "**" }]\nrules: { nonRoot: true }')
}
