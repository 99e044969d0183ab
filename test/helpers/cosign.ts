// One-call recipes for signed test content, the way cosign would produce it: keyless/keyed legacy
// `.sig` and `.att` layers, and cosign v3 bundles, with Rekor SETs and/or TSA timestamps.

import type {
  FakeRekor,
  FakeTsa,
  IssuedCertificate,
  LeafOptions,
  SignedEntry,
  TestKeyPair,
  TestPki,
} from './pki.js'
import { dsseBundle, messageSignatureBundle, type BundleJson } from './bundles.js'
import {
  dsseEnvelope,
  dsseRekorBody,
  envelopeBytes,
  hashedRekordBody,
  inTotoStatement,
  intotoRekorBody,
  legacyAttLayer,
  legacySigLayer,
  SigMediaTypes,
  signBytes,
  simpleSigningPayload,
  type DsseEnvelope,
  type InTotoStatement,
  type LegacyLayer,
} from './sign.js'

/** Default keyless identity: a GitHub Actions release workflow. */
export const DEFAULT_IDENTITY = Object.freeze({
  san: { uri: 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0' },
  issuer: 'https://token.actions.githubusercontent.com',
  extensions: {
    '1.3.6.1.4.1.57264.1.12': 'https://github.com/acme/app',
    '1.3.6.1.4.1.57264.1.14': 'refs/tags/v1.0.0',
    '1.3.6.1.4.1.57264.1.9':
      'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0',
    '1.3.6.1.4.1.57264.1.20': 'push',
  },
})

/** Which trusted times to attach. */
export type TimestampKinds = 'rekor' | 'tsa' | 'both' | 'none'

/** Who signs: a Fulcio-style leaf (keyless) or a bare key pair (keyed). */
export type SigningIdentity =
  | { kind: 'keyless'; leaf: IssuedCertificate; chainPem?: string }
  | { kind: 'keyed'; key: TestKeyPair; hint?: string }

/** Options shared by the recipes. */
export interface RecipeOptions {
  pki: TestPki
  imageDigest: string
  /** Default: a fresh `pki.fulcio` leaf for `leafOptions` (default {@link DEFAULT_IDENTITY}). */
  signer?: SigningIdentity
  leafOptions?: LeafOptions
  /** Default `rekor` for legacy layers, `tsa` for bundles. */
  timestamps?: TimestampKinds
  /** Default `pki.rekor`; `pki.untrustedRekor` for "SET from another log key". */
  rekor?: FakeRekor
  /** Unix seconds; default now. */
  integratedTime?: number
  /** Default `pki.tsa`. */
  tsa?: FakeTsa
  genTime?: Date
}

/** What a recipe made, with the parts tests may want to tamper with or assert on. */
export interface SignedContent {
  signer: SigningIdentity
  /** PEM put in Rekor bodies: the leaf or the public key. */
  keyPem: string
  signature: string
  entry?: SignedEntry
  timestamp?: Buffer
}

function resolveSigner(options: RecipeOptions): SigningIdentity {
  if (options.signer !== undefined) return options.signer
  const leaf = options.pki.fulcio.issueLeaf(options.leafOptions ?? DEFAULT_IDENTITY)
  return { kind: 'keyless', leaf, chainPem: options.pki.fulcio.chainPem }
}

function privateKeyOf(signer: SigningIdentity): IssuedCertificate['privateKey'] {
  return signer.kind === 'keyless' ? signer.leaf.privateKey : signer.key.privateKey
}

function keyPemOf(signer: SigningIdentity): string {
  return signer.kind === 'keyless' ? signer.leaf.certPem : signer.key.publicKeyPem
}

function witness(
  options: RecipeOptions,
  fallback: TimestampKinds,
  body: () => string,
  stamped: () => Buffer
): Pick<SignedContent, 'entry' | 'timestamp'> {
  const kinds = options.timestamps ?? fallback
  const rekor = options.rekor ?? options.pki.rekor
  const tsa = options.tsa ?? options.pki.tsa
  return {
    ...(kinds === 'rekor' || kinds === 'both'
      ? { entry: rekor.signSet(body(), options.integratedTime) }
      : {}),
    ...(kinds === 'tsa' || kinds === 'both'
      ? { timestamp: tsa.timestamp(stamped(), options.genTime) }
      : {}),
  }
}

/**
 * A legacy `.sig` layer for `imageDigest`, signed over the simple-signing payload, with a
 * hashedrekord SET (default) and/or an RFC 3161 timestamp over the raw signature.
 */
export function signedSigLayer(
  options: RecipeOptions & { dockerReference?: string; optional?: Record<string, string> }
): SignedContent & { layer: LegacyLayer; payload: Buffer } {
  const signer = resolveSigner(options)
  const reference = options.dockerReference ?? 'registry.test.invalid/acme/app'
  const payload = simpleSigningPayload(reference, options.imageDigest, options.optional)
  const signature = signBytes(privateKeyOf(signer), payload)
  const keyPem = keyPemOf(signer)
  const proofs = witness(
    options,
    'rekor',
    () => hashedRekordBody(payload, signature, keyPem),
    () => Buffer.from(signature, 'base64')
  )
  const layer = legacySigLayer({
    payload,
    signature,
    ...(signer.kind === 'keyless'
      ? { certPem: signer.leaf.certPem, chainPem: signer.chainPem }
      : {}),
    ...(proofs.entry === undefined ? {} : { set: proofs.entry }),
    ...(proofs.timestamp === undefined ? {} : { rfc3161: proofs.timestamp }),
  })
  return { signer, keyPem, signature, ...proofs, layer, payload }
}

/**
 * A legacy `.att` layer: an in-toto v0.1 statement in a DSSE envelope, with an `intoto` 0.0.2
 * (default) or `dsse` 0.0.1 SET, and/or a timestamp over the envelope bytes (as cosign stamps
 * attestations: not over the signature, so sigstore-js cannot check it after conversion).
 */
export function signedAttLayer(
  options: RecipeOptions & {
    predicateType?: string
    predicate?: unknown
    rekorKind?: 'intoto' | 'dsse'
  }
): SignedContent & { layer: LegacyLayer; envelope: DsseEnvelope; statement: InTotoStatement } {
  const signer = resolveSigner(options)
  const predicateType = options.predicateType ?? SigMediaTypes.COSIGN_CUSTOM_PREDICATE
  const statement = inTotoStatement(
    options.imageDigest,
    predicateType,
    options.predicate ?? {},
    'v0.1'
  )
  const envelope = dsseEnvelope(statement, privateKeyOf(signer))
  const keyPem = keyPemOf(signer)
  const proofs = witness(
    options,
    'rekor',
    () => (options.rekorKind === 'dsse' ? dsseRekorBody : intotoRekorBody)(envelope, keyPem),
    () => envelopeBytes(envelope)
  )
  const layer = legacyAttLayer({
    envelope,
    predicateType,
    ...(signer.kind === 'keyless'
      ? { certPem: signer.leaf.certPem, chainPem: signer.chainPem }
      : {}),
    ...(proofs.entry === undefined ? {} : { set: proofs.entry }),
    ...(proofs.timestamp === undefined ? {} : { rfc3161: proofs.timestamp }),
  })
  const signature = envelope.signatures[0]?.sig ?? ''
  return { signer, keyPem, signature, ...proofs, layer, envelope, statement }
}

function material(signer: SigningIdentity, proofs: Pick<SignedContent, 'entry' | 'timestamp'>) {
  return {
    ...(signer.kind === 'keyless'
      ? { certPem: signer.leaf.certPem, chainPem: signer.chainPem }
      : { publicKeyHint: signer.hint ?? 'customs-test-key' }),
    tlogEntries: proofs.entry === undefined ? [] : [proofs.entry.tlogEntry],
    rfc3161: proofs.timestamp === undefined ? [] : [proofs.timestamp],
  }
}

/**
 * A cosign v3 style bundle for `imageDigest`: an in-toto v1 statement (default predicate
 * `https://sigstore.dev/cosign/sign/v1`, `{}`) in a DSSE envelope, with a TSA timestamp over the
 * signature (default; bundle v0.3) and/or a `dsse` SET (bundle v0.1).
 */
export function signedDsseBundle(
  options: RecipeOptions & { predicateType?: string; predicate?: unknown }
): SignedContent & { bundle: BundleJson; envelope: DsseEnvelope; statement: InTotoStatement } {
  const signer = resolveSigner(options)
  const predicateType = options.predicateType ?? SigMediaTypes.COSIGN_SIGN_PREDICATE
  const statement = inTotoStatement(options.imageDigest, predicateType, options.predicate ?? {})
  const envelope = dsseEnvelope(statement, privateKeyOf(signer))
  const signature = envelope.signatures[0]?.sig ?? ''
  const keyPem = keyPemOf(signer)
  const proofs = witness(
    options,
    'tsa',
    () => dsseRekorBody(envelope, keyPem),
    () => Buffer.from(signature, 'base64')
  )
  const bundle = dsseBundle({ envelope, ...material(signer, proofs) })
  return { signer, keyPem, signature, ...proofs, bundle, envelope, statement }
}

/**
 * A message-signature bundle over the simple-signing payload of `imageDigest` (what `cosign
 * sign-blob --bundle` makes; keyed signers give `publicKey.hint`). Default: no timestamps for a
 * keyed signer, TSA for a keyless one.
 */
export function signedMessageBundle(
  options: RecipeOptions & { payload?: Buffer }
): SignedContent & { bundle: BundleJson; payload: Buffer } {
  const signer = resolveSigner(options)
  const payload =
    options.payload ?? simpleSigningPayload('registry.test.invalid/acme/app', options.imageDigest)
  const signature = signBytes(privateKeyOf(signer), payload)
  const keyPem = keyPemOf(signer)
  const proofs = witness(
    options,
    signer.kind === 'keyed' ? 'none' : 'tsa',
    () => hashedRekordBody(payload, signature, keyPem),
    () => Buffer.from(signature, 'base64')
  )
  const bundle = messageSignatureBundle({ payload, signature, ...material(signer, proofs) })
  return { signer, keyPem, signature, ...proofs, bundle, payload }
}
