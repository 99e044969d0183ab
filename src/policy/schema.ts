// The policy documents' schemas (ImagePolicy, PolicyException, PolicySettings): strict, so that a
// misspelt key is an error rather than a check silently not made. Values are compiled here (globs,
// regexes, CEL, durations, sizes, digests); what needs the whole set is checked in policy/load.ts.

import picomatch from 'picomatch'
import { createHash, createPublicKey } from 'node:crypto'
import { z } from 'zod'
import { parseDuration, parseSize } from '../config/units.js'
import { isDigest, parseDigest } from '../oci/digest.js'
import { anchored, FULCIO_EXTENSIONS } from '../verify/identity.js'
import type { ExtensionName } from '../verify/identity.js'
import { CelCompileError, compileCel } from './cel.js'
import type {
  CompiledAttestation,
  CompiledAuthority,
  CompiledMatch,
  CompiledRules,
} from './types.js'

/** The apiVersion every document carries. */
export const API_VERSION = 'customs.dev/v1'

export const DOCUMENT_KINDS = Object.freeze([
  'ImagePolicy',
  'PolicyException',
  'PolicySettings',
] as const)
export type DocumentKind = (typeof DOCUMENT_KINDS)[number]

/**
 * What a PolicyException may waive by name: the policy's authorities (signatures), attestations,
 * and each rule under `rules`. The evaluator names failed checks with the same words.
 */
export const WAIVABLE_RULES = Object.freeze([
  'authorities',
  'attestations',
  'tags',
  'digests',
  'maxAge',
  'labels',
  'platforms',
  'maxLayers',
  'maxSize',
  'nonRoot',
  'cel',
] as const)
export type WaivableRule = (typeof WAIVABLE_RULES)[number]

/** Codes of the schema's own checks, carried to PolicyIssue.code. */
export type SchemaIssueCode = 'INVALID_GLOB' | 'INVALID_REGEX' | 'INVALID_CEL' | 'DUPLICATE_NAME'

function fail(
  ctx: z.core.$RefinementCtx,
  message: string,
  code?: SchemaIssueCode,
  path?: PropertyKey[]
): void {
  ctx.addIssue({
    code: 'custom',
    message,
    ...(code !== undefined ? { params: { code } } : {}),
    ...(path !== undefined ? { path } : {}),
  })
}

// ---------------------------------------------------------------------------------------------
// Names, durations, sizes, digests

/** A DNS label, as Kubernetes names objects: policies are named in verdicts and metrics. */
export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

const name = z
  .string()
  .regex(NAME_RE, 'must be a lowercase name of letters, digits and dashes, such as baseline')

/** The same shape as config upstream names: `docker.io`, `ghcr.io`, `host:5000`. */
const upstreamName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/,
    'must be a lowercase registry host such as ghcr.io or host:5000'
  )

const metadata = z.strictObject({
  name,
  /** Free-form notes for people (a ticket, a team); never read by Customs. */
  annotations: z.record(z.string(), z.string()).optional(),
})

/** A duration with a unit: in a policy a bare number (milliseconds elsewhere) is surely a slip. */
const duration = z.string().transform((value, ctx) => {
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) {
    fail(ctx, `${JSON.stringify(value)} needs a unit, such as 7d, 12h or 30m`)
    return z.NEVER
  }
  try {
    const ms = parseDuration(value)
    if (ms <= 0) fail(ctx, 'must be longer than zero')
    return ms
  } catch (err) {
    fail(ctx, (err as Error).message)
    return z.NEVER
  }
})

const size = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    const bytes = parseSize(value)
    if (bytes <= 0) fail(ctx, 'must be larger than zero')
    return bytes
  } catch (err) {
    fail(ctx, (err as Error).message)
    return z.NEVER
  }
})

const digest = z.string().superRefine((value, ctx) => {
  if (isDigest(value)) return
  try {
    parseDigest(value)
  } catch (err) {
    fail(ctx, (err as Error).message)
  }
})

// ---------------------------------------------------------------------------------------------
// Globs

type GlobKind = 'repository' | 'tag' | 'value'

const GLOB_LIMITS: Record<GlobKind, number> = { repository: 255, tag: 255, value: 1024 }
/** Characters of names and tags, plus picomatch's `* ? [ ] { } , ! ^`. */
const GLOB_CHARS: Record<GlobKind, RegExp | undefined> = {
  repository: /^[a-z0-9._\-/*?[\]{},!^]+$/,
  tag: /^[A-Za-z0-9._\-*?[\]{},!^]+$/,
  value: undefined,
}

/** Why a pattern is not a usable glob, or undefined. */
function globProblem(pattern: string, kind: GlobKind): string | undefined {
  if (pattern === '') return 'must not be empty'
  if (pattern.length > GLOB_LIMITS[kind]) return `must be at most ${GLOB_LIMITS[kind]} characters`
  if (kind === 'repository') {
    if (/[:@]/.test(pattern))
      return 'names a repository only: give tags under tags, digests under digest'
    if (/[A-Z]/.test(pattern)) return 'repository names are lowercase'
    if (pattern.startsWith('/') || pattern.endsWith('/')) return 'must not start or end with /'
  }
  const chars = GLOB_CHARS[kind]
  if (chars !== undefined && !chars.test(pattern)) {
    return kind === 'tag'
      ? 'may hold only letters, digits, . _ - and the glob characters * ? [ ] { } , !'
      : 'may hold only lowercase letters, digits, . _ - / and the glob characters * ? [ ] { } , !'
  }
  if (!balanced(pattern)) return 'has an unclosed [ or {'
  // picomatch turns a pattern it cannot translate into a regex matching nothing.
  let source: string
  try {
    source = picomatch.makeRe(pattern, GLOB_OPTIONS).source
  } catch (err) {
    return `is not a valid glob: ${(err as Error).message}`
  }
  if (source === '$^') return 'is not a valid glob (an empty or reversed range?)'
  return undefined
}

function balanced(pattern: string): boolean {
  const open: string[] = []
  for (const c of pattern) {
    if (c === '[' || c === '{') open.push(c)
    else if (c === ']' && open.at(-1) === '[') open.pop()
    else if (c === '}' && open.at(-1) === '{') open.pop()
    else if (c === ']' || c === '}') return false
  }
  return open.length === 0
}

/** `**` crosses `/`, `*` does not; a leading dot is an ordinary character. */
const GLOB_OPTIONS = Object.freeze({ dot: true, windows: false })

/** One matcher for a list of globs: true when any matches. */
export function compileGlobs(patterns: readonly string[]): (value: string) => boolean {
  const matchers = patterns.map((p) => picomatch(p, GLOB_OPTIONS))
  return (value: string) => matchers.some((m) => m(value))
}

function glob(kind: GlobKind) {
  return z.string().superRefine((pattern, ctx) => {
    const problem = globProblem(pattern, kind)
    if (problem !== undefined) fail(ctx, problem, 'INVALID_GLOB')
  })
}

const globList = (kind: GlobKind) => z.array(glob(kind)).min(1).transform(compileGlobs)

// ---------------------------------------------------------------------------------------------
// Matching images

const match = z
  .strictObject({
    /** Exact upstream name; absent matches every upstream. */
    upstream: upstreamName.optional(),
    repository: glob('repository').default('**'),
    tags: globList('tag').optional(),
  })
  .transform((m): CompiledMatch => ({
    ...(m.upstream !== undefined ? { upstream: m.upstream } : {}),
    repository: compileGlobs([m.repository]),
    ...(m.tags !== undefined ? { tags: m.tags } : {}),
  }))

const exceptionImage = z
  .strictObject({
    upstream: upstreamName.optional(),
    repository: glob('repository').optional(),
    tags: globList('tag').optional(),
    digest: digest.optional(),
  })
  .superRefine((image, ctx) => {
    if (image.repository === undefined && image.digest === undefined) {
      fail(ctx, 'give a repository glob, a digest, or both')
    }
  })
  .transform((image): CompiledMatch & { readonly digest?: string } => ({
    ...(image.upstream !== undefined ? { upstream: image.upstream } : {}),
    repository: compileGlobs([image.repository ?? '**']),
    ...(image.tags !== undefined ? { tags: image.tags } : {}),
    ...(image.digest !== undefined ? { digest: image.digest } : {}),
  }))

// ---------------------------------------------------------------------------------------------
// Authorities

const extensionShape = Object.fromEntries(
  Object.keys(FULCIO_EXTENSIONS).map((key) => [key, z.string().min(1).optional()])
) as Record<ExtensionName, z.ZodOptional<z.ZodString>>

const httpUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value)
      return url.protocol === 'https:' || url.protocol === 'http:'
    } catch {
      return false
    }
  },
  { message: 'must be the issuer URL, such as https://token.actions.githubusercontent.com' }
)

/** The longest subjectRegExp: patterns are people's, and JavaScript regexes backtrack. */
const MAX_REGEX_LENGTH = 1024

const keyless = z
  .strictObject({
    issuer: httpUrl,
    subject: z.string().min(1).optional(),
    subjectRegExp: z
      .string()
      .min(1)
      .max(MAX_REGEX_LENGTH)
      .superRefine((pattern, ctx) => {
        try {
          // The evaluator matches with identity.ts's anchored(), so check with the same flags;
          // test('') makes V8 compile it now (a pattern too large fails here, not at a pull).
          anchored(pattern).test('')
        } catch (err) {
          // V8 quotes the anchored pattern before its reason; the reason is what the author needs.
          const reason = (err as Error).message.replace(
            /^Invalid regular expression: \/.*\/u?: /s,
            ''
          )
          fail(ctx, `is not a valid regular expression: ${reason}`, 'INVALID_REGEX')
        }
      })
      .optional(),
    extensions: z.strictObject(extensionShape).optional(),
  })
  .superRefine((k, ctx) => {
    if ((k.subject === undefined) === (k.subjectRegExp === undefined)) {
      fail(ctx, 'set exactly one of subject or subjectRegExp')
    }
  })

const authority = z
  .strictObject({
    name,
    keyless: keyless.optional(),
    /** A public key from the configuration's trust.keys by name, or inline as PEM. */
    key: z
      .strictObject({ name: z.string().min(1).optional(), pem: z.string().min(1).max(16384).optional() })
      .superRefine((k, ctx) => {
        if ((k.name === undefined) === (k.pem === undefined)) fail(ctx, 'set exactly one of name or pem')
        if (k.pem !== undefined) {
          try {
            createPublicKey(k.pem)
          } catch {
            ctx.addIssue({ code: 'custom', path: ['pem'], message: 'is not a PEM public key' })
          }
        }
      })
      .optional(),
    static: z.enum(['pass', 'fail']).optional(),
  })
  .superRefine((a, ctx) => {
    const kinds = [a.keyless, a.key, a.static].filter((k) => k !== undefined).length
    if (kinds !== 1) fail(ctx, 'set exactly one of keyless, key or static')
  })
  .transform((a): CompiledAuthority => {
    if (a.keyless !== undefined) {
      const k = a.keyless
      const extensions = Object.fromEntries(
        Object.entries(k.extensions ?? {}).filter(([, v]) => v !== undefined)
      ) as Partial<Record<ExtensionName, string>>
      return {
        kind: 'keyless',
        name: a.name,
        issuer: k.issuer,
        ...(k.subject !== undefined ? { subject: k.subject } : {}),
        ...(k.subjectRegExp !== undefined ? { subjectRegExp: k.subjectRegExp } : {}),
        ...(Object.keys(extensions).length > 0 ? { extensions } : {}),
      }
    }
    if (a.key?.pem !== undefined) return { kind: 'key', name: a.name, key: inlineKeyName(a.key.pem), pem: a.key.pem }
    if (a.key?.name !== undefined) return { kind: 'key', name: a.name, key: a.key.name }
    return { kind: 'static', name: a.name, action: a.static ?? 'fail' }
  })

/** The name an inline policy key is verified under: `inline:` and its SPKI's hash, stable. */
export function inlineKeyName(pem: string): string {
  const spki = createPublicKey(pem).export({ type: 'spki', format: 'der' })
  return `inline:${createHash('sha256').update(spki).digest('hex').slice(0, 16)}`
}

/** A list whose entries' `name`s must differ. */
function uniquelyNamed<T extends z.ZodType<{ name: string }>>(element: T, what: string) {
  return z
    .array(element)
    .min(1)
    .superRefine((items, ctx) => {
      const seen = new Set<string>()
      for (const [i, item] of items.entries()) {
        if (seen.has(item.name))
          fail(ctx, `${what} ${item.name} is named twice`, 'DUPLICATE_NAME', [i, 'name'])
        seen.add(item.name)
      }
    })
}

const authorities = uniquelyNamed(authority, 'authority')

// ---------------------------------------------------------------------------------------------
// Attestations and rules

const attestation = z
  .strictObject({
    name,
    /** The in-toto predicateType, exactly: https://slsa.dev/provenance/v1. */
    predicateType: z
      .string()
      .regex(/^\S+$/, 'must be a predicate type such as https://slsa.dev/provenance/v1'),
    authorities: authorities.optional(),
    slsa: z
      .strictObject({
        builderId: z.string().min(1).optional(),
        sourceUri: z.string().min(1).optional(),
      })
      .optional(),
    vulnerabilities: z
      .strictObject({
        /** The scan must have finished within this long. */
        maxAge: duration.optional(),
        /** No finding at or above this severity (findings in `allow` excepted). */
        failOn: z.enum(['low', 'medium', 'high', 'critical']).optional(),
        /** Vulnerability ids accepted whatever their severity (CVE-2024-1234, GHSA-...). */
        allow: z.array(z.string().min(1).max(128)).max(10_000).optional(),
      })
      .optional(),
  })
  .transform((a): CompiledAttestation => ({
    name: a.name,
    predicateType: a.predicateType,
    ...(a.authorities !== undefined ? { authorities: a.authorities } : {}),
    ...(a.slsa !== undefined ? { slsa: dropUndefined(a.slsa) } : {}),
    ...(a.vulnerabilities !== undefined
      ? {
          vulnerabilities: {
            ...(a.vulnerabilities.maxAge !== undefined ? { maxAgeMs: a.vulnerabilities.maxAge } : {}),
            ...(a.vulnerabilities.failOn !== undefined ? { failOn: a.vulnerabilities.failOn } : {}),
            ...(a.vulnerabilities.allow !== undefined ? { allow: new Set(a.vulnerabilities.allow) } : {}),
          },
        }
      : {}),
  }))

const digestSet = z
  .array(digest)
  .min(1)
  .transform((list): ReadonlySet<string> => new Set(list))

const celRule = z.string().transform((source, ctx) => {
  try {
    return compileCel(source)
  } catch (err) {
    if (!(err instanceof CelCompileError)) throw err
    const where =
      source.includes('\n') || err.column > 1
        ? ` (at ${err.line}:${err.column} of the expression)`
        : ''
    fail(ctx, `${err.message}${where}`, 'INVALID_CEL')
    return z.NEVER
  }
})

const PLATFORM_RE = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/

const rules = z
  .strictObject({
    tags: z
      .strictObject({ allow: globList('tag').optional(), deny: globList('tag').optional() })
      .optional(),
    digests: z.strictObject({ allow: digestSet.optional(), deny: digestSet.optional() }).optional(),
    /** The image config's `created` may be at most this old. */
    maxAge: duration.optional(),
    /** Label name -> value glob; `*` means present with any value (also empty). */
    labels: z.record(z.string().min(1).max(256), glob('value')).optional(),
    platforms: z
      .array(
        z
          .string()
          .regex(
            PLATFORM_RE,
            'must be os/arch or os/arch/variant, such as linux/amd64 or linux/arm/v7'
          )
      )
      .min(1)
      .optional(),
    maxLayers: z.number().int().min(1).optional(),
    maxSize: size.optional(),
    nonRoot: z.boolean().optional(),
    cel: celRule.optional(),
  })
  .transform((r): CompiledRules => {
    const out: { -readonly [K in keyof CompiledRules]: CompiledRules[K] } = {}
    if (r.tags !== undefined) out.tags = dropUndefined(r.tags)
    if (r.digests !== undefined) out.digests = dropUndefined(r.digests)
    if (r.maxAge !== undefined) out.maxAgeMs = r.maxAge
    if (r.labels !== undefined) {
      out.labels = Object.entries(r.labels).map(([labelName, pattern]) => ({
        name: labelName,
        pattern,
        // `*` would not match the empty string in picomatch; a label set to '' is still present.
        value: pattern === '*' || pattern === '**' ? () => true : compileGlobs([pattern]),
      }))
    }
    if (r.platforms !== undefined) out.platforms = new Set(r.platforms)
    if (r.maxLayers !== undefined) out.maxLayers = r.maxLayers
    if (r.maxSize !== undefined) out.maxSizeBytes = r.maxSize
    if (r.nonRoot !== undefined) out.nonRoot = r.nonRoot
    if (r.cel !== undefined) out.cel = r.cel
    return out
  })

function dropUndefined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>
  }
}

// ---------------------------------------------------------------------------------------------
// Documents

const apiVersion = z.literal(API_VERSION)

/**
 * `kind: ImagePolicy`: which images it applies to, who must have signed them, which attestations
 * they need, and the rules their facts must meet. Every matching policy must pass.
 */
export const imagePolicySchema = z.strictObject({
  apiVersion,
  kind: z.literal('ImagePolicy'),
  metadata,
  spec: z
    .strictObject({
      mode: z.enum(['enforce', 'audit']).default('enforce'),
      onVerifierUnavailable: z.enum(['deny', 'allow']).default('deny'),
      match: z.array(match).min(1),
      authorities: authorities.optional(),
      authoritiesRequired: z.number().int().min(1).optional(),
      attestations: uniquelyNamed(attestation, 'attestation').optional(),
      rules: rules.optional(),
      /**
       * What a pull by tag gets when the tag moved to a digest whose verified signers differ from
       * the previous digest's, or that lost its signature: `flag` (the default) records and
       * announces it; `detain` refuses the pull until a person releases the new digest.
       */
      tagMoves: z.strictObject({ signerChange: z.enum(['detain', 'flag']).default('flag') }).optional(),
    })
    .superRefine((spec, ctx) => {
      if (spec.authoritiesRequired === undefined) return
      const n = spec.authorities?.length ?? 0
      if (spec.authoritiesRequired > n) {
        fail(ctx, `must be at most the number of authorities (${n})`, undefined, [
          'authoritiesRequired',
        ])
      }
    }),
})

/** Exception expiry: a date is the end of that day in UTC; a timestamp must carry its offset. */
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/
const TIMESTAMP_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/

/** Milliseconds since the epoch at which an exception stops applying; throws on a bad value. */
export function parseExpiry(value: string): number {
  const date = DATE_RE.exec(value) ?? TIMESTAMP_RE.exec(value)
  if (date === null) {
    throw new Error(
      'must be a date (2027-01-31) or a timestamp with its offset (2027-01-31T18:00:00Z)'
    )
  }
  const [year, month, day] = [Number(date[1]), Number(date[2]), Number(date[3])]
  const start = Date.UTC(year, month - 1, day)
  const check = new Date(start)
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day
  ) {
    throw new Error(`${value} is not a calendar date`)
  }
  if (DATE_RE.test(value)) return start + 86_400_000 - 1
  const ms = Date.parse(value.replace(' ', 'T'))
  if (!Number.isFinite(ms)) throw new Error(`${value} is not a valid timestamp`)
  return ms
}

/**
 * `kind: PolicyException`: named images are exempted from some rules of some policies, for a
 * reason, by an owner, until a date. Expired exceptions load (with a warning) and stop applying.
 */
export const policyExceptionSchema = z.strictObject({
  apiVersion,
  kind: z.literal('PolicyException'),
  metadata,
  spec: z.strictObject({
    images: z.array(exceptionImage).min(1),
    waives: z
      .array(
        z.strictObject({
          policy: name,
          /** Absent: the whole policy. */
          rules: z.array(z.enum(WAIVABLE_RULES)).min(1).optional(),
        })
      )
      .min(1)
      .superRefine((waives, ctx) => {
        const seen = new Set<string>()
        for (const [i, w] of waives.entries()) {
          if (seen.has(w.policy))
            fail(ctx, `policy ${w.policy} is waived twice`, 'DUPLICATE_NAME', [i, 'policy'])
          seen.add(w.policy)
        }
      }),
    reason: z.string().trim().min(1),
    owner: z.string().trim().min(1),
    expires: z.string().transform((value, ctx) => {
      try {
        return parseExpiry(value)
      } catch (err) {
        fail(ctx, (err as Error).message)
        return z.NEVER
      }
    }),
  }),
})

/**
 * `kind: PolicySettings`: what applies to the whole set, at most one per set. It lives with the
 * policies rather than in the configuration so that it is reviewed, versioned and hashed into the
 * revision with them: `unmatched: deny` changes verdicts as much as any policy does.
 */
export const policySettingsSchema = z.strictObject({
  apiVersion,
  kind: z.literal('PolicySettings'),
  metadata,
  spec: z.strictObject({
    /** What an image that no policy matches gets. */
    unmatched: z.enum(['allow', 'audit', 'deny']).default('allow'),
  }),
})

export const DOCUMENT_SCHEMAS = Object.freeze({
  ImagePolicy: imagePolicySchema,
  PolicyException: policyExceptionSchema,
  PolicySettings: policySettingsSchema,
} satisfies Record<DocumentKind, z.ZodType>)

export type ImagePolicyDocument = z.output<typeof imagePolicySchema>
export type PolicyExceptionDocument = z.output<typeof policyExceptionSchema>
export type PolicySettingsDocument = z.output<typeof policySettingsSchema>
