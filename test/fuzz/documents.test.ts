// Fuzz: the documents Customs reads from upstreams and from its operators: signature layers and
// Sigstore bundles, simple-signing payloads and in-toto statements, policy files and the
// configuration. Upstream documents never throw past their parser (a malformed signature is a
// failed signature, with a reason); operator documents throw only PolicyError / ConfigError with
// positioned issues.

import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import fc from 'fast-check'
import { stringify } from 'yaml'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { PolicyError, parsePolicyDocuments } from '../../src/policy/load.js'
import { Annotation, dssePayload, legacyAttestationBundle, legacySignatureBundle } from '../../src/verify/cosign-legacy.js'
import { declaredPredicateType, parseStatement, predicateFacts, simpleSigningMismatch } from '../../src/verify/payloads.js'
import { loadTrust } from '../../src/verify/trust.js'
import { TrustHolder } from '../../src/verify/trust-reload.js'
import { SignatureVerifier } from '../../src/verify/verifier.js'
import type { Digest } from '../../src/oci/digest.js'
import { fuzz, thrown } from './settings.js'

const DIGEST = `sha256:${'ab'.repeat(32)}` as Digest
const json = fc.json({ maxDepth: 4 })
const anything = fc.anything({ maxDepth: 3, withNullPrototype: true, withObjectString: true })
const b64 = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'))

describe('fuzz: signature layers and bundles', () => {
  const annotations = fc.record(
    {
      [Annotation.SIGNATURE]: fc.oneof(b64, fc.string()),
      [Annotation.CERTIFICATE]: fc.oneof(fc.string(), b64.map((b) => `-----BEGIN CERTIFICATE-----\n${b}\n-----END CERTIFICATE-----`)),
      [Annotation.CHAIN]: fc.string(),
      [Annotation.BUNDLE]: fc.oneof(
        json,
        fc.record({
          SignedEntryTimestamp: fc.oneof(b64, anything),
          Payload: fc.oneof(fc.record({ body: fc.oneof(b64, json.map((j) => Buffer.from(j).toString('base64')), anything), logIndex: anything, logID: anything, integratedTime: anything }), anything),
        }).map((o) => JSON.stringify(o) ?? 'null')
      ),
      [Annotation.RFC3161]: fc.oneof(json, fc.record({ SignedRFC3161Timestamp: fc.oneof(b64, anything) }).map((o) => JSON.stringify(o) ?? '{}')),
    },
    { requiredKeys: [] }
  ) as fc.Arbitrary<Record<string, string>>
  const payload = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), json.map((j) => Buffer.from(j)))

  /** The verifier Customs builds, with the public Sigstore root: verify() must never throw. */
  let verifier: SignatureVerifier
  before(async () => {
    verifier = new SignatureVerifier(new TrustHolder(await loadTrust({ roots: [{ name: 'public', tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 }], keys: [], signatureRepositories: [], discovery: { attestations: true, negativeTtl: 300_000, maxArtifacts: 16 } } as never)))
  })

  it('a .sig layer with any annotations becomes a bundle or an Error, and the bundle fails verification with a reason', () => {
    fc.assert(
      fc.property(payload, annotations, (bytes, ann) => {
        let bundle: unknown
        const err = thrown(() => {
          bundle = legacySignatureBundle(bytes, ann)
        })
        // discover.ts turns an Error here into a failed candidate with its message.
        if (err !== undefined) return assert.ok(err instanceof Error, String(err))
        const result = verifier.verify(bundle, bytes)
        assert.equal(result.ok, false)
        if (!result.ok) assert.equal(typeof result.reason, 'string')
      }),
      fuzz(500)
    )
  })

  it('a .att layer with any bytes becomes a bundle or an Error, and the bundle fails verification with a reason', () => {
    const envelope = fc.oneof(
      payload,
      fc.record({ payload: fc.oneof(b64, anything), payloadType: fc.string(), signatures: fc.oneof(fc.array(fc.record({ sig: fc.oneof(b64, anything), keyid: fc.string() }), { maxLength: 3 }), anything) }, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o)))
    )
    fc.assert(
      fc.property(envelope, annotations, (bytes, ann) => {
        let bundle: unknown
        const err = thrown(() => {
          bundle = legacyAttestationBundle(bytes, ann)
        })
        if (err !== undefined) return assert.ok(err instanceof Error, String(err))
        const result = verifier.verify(bundle)
        assert.equal(result.ok, false)
        const inner = dssePayload(bundle)
        assert.ok(inner === undefined || Buffer.isBuffer(inner))
      }),
      fuzz(500)
    )
  })

  it('verify() answers a failure with a reason for any JSON as a bundle (OCI 1.1 referrers)', () => {
    const bundleLike = fc.oneof(
      anything,
      fc.record(
        {
          mediaType: fc.constantFrom('application/vnd.dev.sigstore.bundle.v0.3+json', 'application/vnd.dev.sigstore.bundle+json;version=0.1', 'x'),
          verificationMaterial: fc.oneof(
            fc.record({ publicKey: fc.record({ hint: fc.string() }), tlogEntries: fc.oneof(fc.constant([]), anything) }, { requiredKeys: [] }),
            fc.record({ certificate: fc.record({ rawBytes: b64 }), x509CertificateChain: fc.record({ certificates: fc.array(fc.record({ rawBytes: b64 }), { maxLength: 2 }) }) }, { requiredKeys: [] }),
            anything
          ),
          messageSignature: fc.oneof(fc.record({ messageDigest: fc.record({ algorithm: fc.constantFrom('SHA2_256', 'X'), digest: b64 }), signature: b64 }), anything),
          dsseEnvelope: fc.oneof(fc.record({ payload: b64, payloadType: fc.string(), signatures: fc.array(fc.record({ sig: b64, keyid: fc.string() }), { maxLength: 2 }) }), anything),
        },
        { requiredKeys: [] }
      )
    )
    fc.assert(
      fc.property(bundleLike, payload, (bundle, bytes) => {
        const result = verifier.verify(bundle, bytes)
        assert.equal(result.ok, false)
        if (!result.ok) assert.equal(typeof result.reason, 'string')
      }),
      fuzz(500)
    )
  })
})

describe('fuzz: signed payloads', () => {
  const simpleSigning = fc.oneof(
    json.map((j) => Buffer.from(j)),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.record({ critical: fc.oneof(fc.record({ type: fc.oneof(fc.constant('cosign container image signature'), anything), image: fc.oneof(fc.record({ 'docker-manifest-digest': fc.oneof(fc.constant(DIGEST), anything) }), anything), identity: anything }, { requiredKeys: [] }), anything), optional: anything }, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o)))
  )
  it('simpleSigningMismatch returns a reason or undefined, and undefined only for the very digest', () => {
    fc.assert(
      fc.property(simpleSigning, (bytes) => {
        const reason = simpleSigningMismatch(bytes, DIGEST)
        if (reason === undefined) {
          const body = JSON.parse(bytes.toString()) as { critical: { image: Record<string, unknown> } }
          assert.equal(body.critical.image['docker-manifest-digest'], DIGEST)
        } else assert.equal(typeof reason, 'string')
      }),
      fuzz(1000)
    )
  })

  const statement = fc.oneof(
    json.map((j) => Buffer.from(j)),
    fc.record(
      {
        _type: fc.oneof(fc.constant('https://in-toto.io/Statement/v1'), anything),
        predicateType: fc.oneof(fc.constantFrom('https://slsa.dev/provenance/v1', 'https://slsa.dev/provenance/v0.2', 'https://spdx.dev/Document', 'https://cosign.sigstore.dev/attestation/vuln/v1'), anything),
        subject: fc.oneof(fc.array(fc.oneof(fc.record({ digest: fc.oneof(fc.constant({ sha256: 'ab'.repeat(32) }), anything) }), anything), { maxLength: 3 }), anything),
        predicate: fc.oneof(
          anything,
          fc.record({ builder: anything, runDetails: fc.record({ builder: fc.record({ id: anything }) }), buildDefinition: fc.record({ resolvedDependencies: fc.oneof(fc.array(fc.record({ uri: anything })), anything) }), invocation: anything, scanner: fc.record({ uri: anything, result: anything }), metadata: anything }, { requiredKeys: [] })
        ),
      },
      { requiredKeys: [] }
    ).map((o) => Buffer.from(JSON.stringify(o)))
  )
  it('parseStatement, declaredPredicateType and predicateFacts never throw', () => {
    fc.assert(
      fc.property(statement, (bytes) => {
        const type = declaredPredicateType(bytes)
        assert.ok(type === undefined || (typeof type === 'string' && type.length <= 512))
        const parsed = parseStatement(bytes, DIGEST)
        if (typeof parsed === 'string') return
        assert.equal(typeof predicateFacts(parsed), 'object')
      }),
      fuzz(1000)
    )
  })
})

/** Fails unless `err` is undefined or an error of `type` whose every issue has a message. */
function onlyTyped(err: unknown, type: typeof ConfigError | typeof PolicyError): void {
  if (err === undefined) return
  assert.ok(err instanceof type, `threw a ${(err as Error)?.constructor?.name}: ${(err as Error)?.stack ?? String(err)}`)
  for (const issue of err.issues) assert.ok(issue.message.length > 0)
}

describe('fuzz: the configuration loader', () => {
  const KEYS = ['listen', 'log', 'storage', 'state', 'upstreams', 'trust', 'policy', 'tls', 'admin', 'host', 'port', 'url', 'name', 'credentials', 'password', 'default', 'aliases', 'maxSize', 'fillTimeout', '__proto__', 'constructor']
  const key = fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 }))
  const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom('5m', '50GiB', 'http://127.0.0.1:1', 'redis://x', '1e999', '-1', '0', 'NaN', '', 'docker.io'),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.string({ maxLength: 20 }),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.dictionary(key, tie('v'), { maxKeys: 4 })
    ),
  })).v
  const config = fc.dictionary(key, value, { maxKeys: 6 })

  it('parseConfig returns a configuration or throws a ConfigError, for structured YAML', () => {
    fc.assert(
      fc.property(config, (doc) => {
        onlyTyped(thrown(() => parseConfig(stringify(doc), { env: {}, file: 'c.yaml' })), ConfigError)
      }),
      fuzz(500)
    )
  })

  it('parseConfig throws only a ConfigError for arbitrary text and environment values', () => {
    const vars = fc.dictionary(
      fc.constantFrom('CUSTOMS_LISTEN_PORT', 'CUSTOMS_STORAGE_MAXSIZE', 'CUSTOMS_STATE_BACKEND', 'CUSTOMS_LOG_LEVEL', 'CUSTOMS_X', 'CUSTOMS_', 'CUSTOMS_PORT', 'CUSTOMS_STORAGE_FILLTIMEOUT'),
      fc.string({ unit: 'binary', maxLength: 30 }),
      { maxKeys: 3 }
    )
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), config.map((c) => stringify(c))), vars, (text, env) => {
        onlyTyped(thrown(() => parseConfig(text, { env, file: 'c.yaml' })), ConfigError)
      }),
      fuzz(500)
    )
  })
})

describe('fuzz: the policy loader', () => {
  const options = { keyNames: new Set(['release']), now: () => Date.UTC(2026, 0, 1) }
  const policyValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.constantFrom('**', 'acme/**', '[', '(?<', 'image.labels["a"] == "b"', 'size(', '7d', '1e999', 'enforce', 'audit', 'deny'),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.string({ maxLength: 12 }),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.dictionary(fc.constantFrom('name', 'repository', 'tags', 'allow', 'deny', 'cel', 'labels', 'maxAge', 'key', 'keyless', 'static', 'issuer', 'subjectRegExp', 'nonRoot', 'policy', 'rules', '__proto__'), tie('v'), { maxKeys: 4 })
    ),
  })).v
  const policy = fc.record({
    apiVersion: fc.constantFrom('customs.dev/v1', 'v2'),
    kind: fc.constantFrom('ImagePolicy', 'PolicyException', 'PolicySettings', 'Other'),
    metadata: fc.oneof(fc.record({ name: fc.constantFrom('p', 'q', 'Bad Name', '') }), policyValue),
    spec: fc.dictionary(fc.constantFrom('mode', 'match', 'authorities', 'rules', 'attestations', 'images', 'waives', 'reason', 'owner', 'expires', 'unmatched'), policyValue, { maxKeys: 6 }),
  })

  it('parsePolicyDocuments returns a set or throws a positioned PolicyError, for structured documents', () => {
    fc.assert(
      fc.property(fc.array(policy, { minLength: 1, maxLength: 4 }), (docs) => {
        const text = docs.map((d) => stringify(d)).join('---\n')
        const err = thrown(() => parsePolicyDocuments([{ path: 'p.yaml', text }], options))
        onlyTyped(err, PolicyError)
        if (err instanceof PolicyError) for (const issue of err.issues) assert.ok(issue.line >= 1 && issue.column >= 1, JSON.stringify(issue))
      }),
      fuzz(500)
    )
  })
})
