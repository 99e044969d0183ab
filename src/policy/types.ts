// The compiled policy set: what policy/load.ts produces from YAML documents and policy/evaluate.ts
// consumes. Globs, regexes and CEL programs are compiled once, at load; evaluation does no I/O.

import type { ExtensionName } from '../verify/identity.js'

export type PolicyMode = 'enforce' | 'audit'

/** Which images a policy or exception applies to. Every given field must match. */
export interface CompiledMatch {
  /** Exact upstream name; undefined matches every upstream. */
  readonly upstream?: string
  /** Repository glob (`**` crosses `/`), compiled. */
  readonly repository: (repository: string) => boolean
  /** Tag globs; when given, only pulls by a matching tag match (pulls by digest never do). */
  readonly tags?: (tag: string) => boolean
}

/** One way an image may be signed. */
export type CompiledAuthority =
  | {
      readonly kind: 'keyless'
      readonly name: string
      readonly issuer: string
      readonly subject?: string
      /** The author's pattern; evaluate anchors it (identityMismatch). */
      readonly subjectRegExp?: string
      readonly extensions?: Partial<Record<ExtensionName, string>>
    }
  | {
      readonly kind: 'key'
      readonly name: string
      /** A key name from trust.keys, or `inline:<hash>` for a key given in the policy. */
      readonly key: string
      /** The inline key's PEM: the verifier tries it too while the policy is in force. */
      readonly pem?: string
    }
  | { readonly kind: 'static'; readonly name: string; readonly action: 'pass' | 'fail' }

export interface CompiledAttestation {
  readonly name: string
  readonly predicateType: string
  /** Who must have signed it; any of these (absent: any verified signer). */
  readonly authorities?: readonly CompiledAuthority[]
  /** SLSA provenance conditions (exact values). */
  readonly slsa?: { readonly builderId?: string; readonly sourceUri?: string }
  /** Vulnerability scan conditions. */
  readonly vulnerabilities?: {
    readonly maxAgeMs?: number
    /** No finding at or above this severity, unless its id is in `allow`. */
    readonly failOn?: 'low' | 'medium' | 'high' | 'critical'
    readonly allow?: ReadonlySet<string>
  }
}

/** The image-fact rules; each absent field is not checked. */
export interface CompiledRules {
  readonly tags?: { readonly allow?: (tag: string) => boolean; readonly deny?: (tag: string) => boolean }
  readonly digests?: { readonly allow?: ReadonlySet<string>; readonly deny?: ReadonlySet<string> }
  readonly maxAgeMs?: number
  /** Label name -> required value glob (`*` means present with any value). */
  readonly labels?: ReadonlyArray<{ readonly name: string; readonly value: (v: string) => boolean; readonly pattern: string }>
  /** `os/arch[/variant]` entries. */
  readonly platforms?: ReadonlySet<string>
  readonly maxLayers?: number
  readonly maxSizeBytes?: number
  readonly nonRoot?: boolean
  /** A compiled CEL expression over the facts; true passes. */
  readonly cel?: { readonly source: string; readonly evaluate: (facts: Record<string, unknown>) => unknown }
}

export interface CompiledPolicy {
  readonly name: string
  /** Where it was defined, for messages: `policies/base.yaml:3`. */
  readonly source: string
  readonly mode: PolicyMode
  readonly onVerifierUnavailable: 'deny' | 'allow'
  readonly match: readonly CompiledMatch[]
  readonly authorities: readonly CompiledAuthority[]
  /** How many distinct authorities must be satisfied (k of n); 1 when absent. */
  readonly authoritiesRequired: number
  readonly attestations: readonly CompiledAttestation[]
  readonly rules: CompiledRules
  /** What a tag move with a signer change gets under this policy; absent: flag (src/inspection/tag-moves.ts). */
  readonly tagMoves?: { readonly signerChange: 'detain' | 'flag' }
}

export interface CompiledException {
  readonly name: string
  readonly source: string
  readonly images: ReadonlyArray<CompiledMatch & { readonly digest?: string }>
  /** Policy name -> waived rule names (undefined: the whole policy). */
  readonly waives: ReadonlyArray<{ readonly policy: string; readonly rules?: readonly string[] }>
  readonly reason: string
  readonly owner: string
  /** Milliseconds since the epoch; the exception stops applying after it. */
  readonly expires: number
}

/** Every inline key the set's policies name, for the verifier. */
export function inlineKeys(set: PolicySet): Array<{ name: string; pem: string }> {
  const out = new Map<string, string>()
  for (const p of set.policies) {
    for (const a of [...p.authorities, ...p.attestations.flatMap((x) => x.authorities ?? [])]) {
      if (a.kind === 'key' && a.pem !== undefined) out.set(a.key, a.pem)
    }
  }
  return [...out].map(([name, pem]) => ({ name, pem }))
}

export interface PolicySet {
  readonly policies: readonly CompiledPolicy[]
  readonly exceptions: readonly CompiledException[]
  /** What an image no policy matches gets. */
  readonly unmatched: 'allow' | 'audit' | 'deny'
  /** A hash of every document's canonical content: keys the verdict cache. */
  readonly revision: string
  /**
   * What loaded but deserves a look (an expired exception, a Docker Hub name without its
   * namespace), positioned like load errors; `policy lint` prints them. Absent when none.
   */
  readonly warnings?: ReadonlyArray<{
    readonly file: string
    readonly line: number
    readonly column: number
    readonly path: string
    readonly code: string
    readonly message: string
  }>
}
