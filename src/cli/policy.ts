// `customs policy lint DIR`: loads a policy folder as `serve` would and prints a one-line summary,
// or every positioned problem. Warnings (an expired exception) are printed but do not fail it.

import { formatPolicyIssue, loadPolicies, PolicyError } from '../policy/load.js'
import type { PolicyLoadOptions } from '../policy/load.js'

export interface PolicyIo {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
}

/**
 * Lints the policies under dir. `options.keyNames` should be the configuration's trust.keys
 * names (and `upstreams` its upstream names) so that references are checked as at start.
 * Returns the exit code: 0 valid (warnings on stderr), 1 invalid (every problem on stderr).
 */
export async function policyLint(
  dir: string,
  io: PolicyIo,
  options: PolicyLoadOptions
): Promise<number> {
  try {
    const set = await loadPolicies(dir, options)
    for (const warning of set.warnings ?? []) {
      io.stderr.write(`warning: ${formatPolicyIssue(warning)}\n`)
    }
    const policies = plural(set.policies.length, 'policy', 'policies')
    const exceptions = plural(set.exceptions.length, 'exception', 'exceptions')
    io.stdout.write(`${policies}, ${exceptions}, revision ${set.revision}\n`)
    return 0
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    const count = plural(err.issues.length, 'problem', 'problems')
    io.stderr.write(`${err.message}\n${dir}: invalid policies (${count})\n`)
    return 1
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`
}
