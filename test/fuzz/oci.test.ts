// Fuzz: the parsers every client request and upstream answer goes through (references, names,
// digests, routing, Accept, manifests and indexes). Whatever the input, each either returns a
// value that satisfies its grammar or throws a CustomsError with the code the API documents;
// nothing else is ever thrown, and nothing hangs (the regular expressions are linear).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { CustomsError, isCustomsError } from '../../src/errors.js'
import { parseConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { isDigest, parseDigest } from '../../src/oci/digest.js'
import { parseManifest, referencedBlobs } from '../../src/oci/manifest.js'
import { acceptsMediaType, MediaType } from '../../src/oci/media-types.js'
import { isRepositoryName, parseReference } from '../../src/oci/reference.js'
import { UpstreamRouter } from '../../src/upstream/routing.js'
import { fuzz, thrown } from './settings.js'

function assertCode(err: unknown, codes: readonly string[]): void {
  if (err === undefined) return
  assert.ok(err instanceof CustomsError, `threw a ${(err as Error)?.constructor?.name}: ${String(err)}`)
  assert.ok(codes.includes(err.code), `threw ${err.code}: ${err.message}`)
}

/** Characters names, tags and digests are made of, plus the ones that break them. */
const REF_CHARS = 'abcdefz0129:._-/@+=ABCZ %\u0000\u00e9\u212a\uD800'.split('')
const refText = fc.array(fc.constantFrom(...REF_CHARS), { maxLength: 80 }).map((a) => a.join(''))
const anyText = fc.oneof(refText, fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 600 }))
const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'.split('')), minLength: n - 1, maxLength: n + 1 })
const digestish = fc.oneof(
  hex(64).map((h) => `sha256:${h}`),
  hex(128).map((h) => `sha512:${h}`),
  fc.tuple(fc.constantFrom('sha256', 'sha512', 'md5', 'SHA256', 'sha256+b64', ''), anyText).map(([a, b]) => `${a}:${b}`)
)

describe('fuzz: references and digests', () => {
  it('parseReference returns a tag or a digest, or throws TAG_INVALID / DIGEST_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, digestish), (value) => {
        let ref
        const err = thrown(() => {
          ref = parseReference(value)
        })
        assertCode(err, ['TAG_INVALID', 'DIGEST_INVALID'])
        if (ref === undefined) return
        const r = ref as ReturnType<typeof parseReference>
        if (r.kind === 'digest') assert.ok(isDigest(r.digest))
        else assert.match(r.tag, /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/)
      }),
      fuzz(2000)
    )
  })

  it('parseDigest accepts exactly sha256/sha512 lowercase hex, else DIGEST_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(digestish, anyText), (value) => {
        const err = thrown(() => parseDigest(value))
        assertCode(err, ['DIGEST_INVALID'])
        assert.equal(err === undefined, /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/.test(value))
      }),
      fuzz(2000)
    )
  })

  it('a name the grammar admits is bounded and made of lowercase components', () => {
    fc.assert(
      fc.property(anyText, (name) => {
        if (!isRepositoryName(name)) return
        assert.ok(name.length <= 255)
        assert.match(name, /^[a-z0-9._/-]+$/)
        assert.ok(!name.startsWith('/') && !name.endsWith('/') && !name.includes('//'))
      }),
      fuzz(2000)
    )
  })

  it('answers in linear time for a 64 KiB name, tag and digest (no regex backtracking)', () => {
    for (const value of ['a'.repeat(65_536) + '!', 'a-'.repeat(32_768) + '-', `sha256:${'a'.repeat(65_536)}`, 'a__'.repeat(20_000) + '_']) {
      assertCode(thrown(() => parseReference(value)), ['TAG_INVALID', 'DIGEST_INVALID'])
      assert.equal(isRepositoryName(value), false)
    }
  })
})

describe('fuzz: routing a request name', () => {
  const config = parseConfig('', { env: {} }) as Config
  const router = new UpstreamRouter(config.upstreams)
  const configured = new Set(config.upstreams.map((u) => u.name))
  const hosts = fc.constantFrom('docker.io', 'index.docker.io', 'DOCKER.IO', 'ghcr.io', 'ghcr', 'quay.io', 'evil.example', '169.254.169.254', 'localhost:5000', 'registry-1.docker.io', '')
  const names = fc.oneof(
    anyText,
    fc.tuple(hosts, refText).map(([h, r]) => `${h}/${r}`),
    fc.array(fc.constantFrom('library', 'acme', 'app', 'ghcr.io', 'docker.io', 'Upper', '..', '.', 'a_b', 'x-'), { minLength: 1, maxLength: 5 }).map((p) => p.join('/'))
  )

  it('routes to a configured upstream with a valid repository, or throws NAME_INVALID / NAME_UNKNOWN', () => {
    fc.assert(
      fc.property(names, fc.option(fc.oneof(hosts, anyText), { nil: undefined }), (name, ns) => {
        let route
        const err = thrown(() => {
          route = router.route(name, ns)
        })
        assertCode(err, ['NAME_INVALID', 'NAME_UNKNOWN'])
        if (route === undefined) return
        const r = route as ReturnType<UpstreamRouter['route']>
        // Never an open proxy: whatever the name or ns, the upstream is one that is configured.
        assert.ok(configured.has(r.upstream), r.upstream)
        assert.ok(isRepositoryName(r.repository), r.repository)
      }),
      fuzz(3000)
    )
  })
})

describe('fuzz: Accept headers', () => {
  it('acceptsMediaType answers a boolean for any header, in linear time', () => {
    const accept = fc.oneof(
      anyText,
      fc.array(fc.constantFrom(MediaType.OCI_MANIFEST, '*/*', 'application/*', ';q=0', ';q=0.5', ', ', ' ', ';', '=', 'q', '"'), { maxLength: 40 }).map((a) => a.join(''))
    )
    fc.assert(
      fc.property(accept, fc.constantFrom(MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, ''), (header, type) => {
        assert.equal(typeof acceptsMediaType(header, type), 'boolean')
      }),
      fuzz(2000)
    )
    assert.equal(typeof acceptsMediaType(`${' ;'.repeat(40_000)}q=0`, MediaType.OCI_MANIFEST), 'boolean')
  })
})

describe('fuzz: manifests and indexes', () => {
  const digest = 'sha256:' + 'a'.repeat(64)
  const descriptor = fc.record(
    {
      mediaType: fc.oneof(fc.constantFrom(MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, 'application/vnd.oci.image.layer.v1.tar+gzip'), fc.anything({ maxDepth: 1 })),
      digest: fc.oneof(fc.constant(digest), digestish, fc.anything({ maxDepth: 1 })),
      size: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER + 2), fc.anything({ maxDepth: 1 })),
      platform: fc.oneof(fc.record({ os: fc.string(), architecture: fc.string(), variant: fc.anything({ maxDepth: 1 }) }), fc.anything({ maxDepth: 1 })),
      annotations: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.anything({ maxDepth: 2 })),
      urls: fc.anything({ maxDepth: 1 }),
    },
    { requiredKeys: [] }
  )
  const types = fc.constantFrom(MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_LIST, 'application/json', '')
  const document = fc.record(
    {
      schemaVersion: fc.oneof(fc.constant(2), fc.anything({ maxDepth: 0 })),
      mediaType: fc.oneof(types, fc.anything({ maxDepth: 0 })),
      config: fc.oneof(descriptor, fc.anything({ maxDepth: 1 })),
      layers: fc.oneof(fc.array(descriptor, { maxLength: 4 }), fc.anything({ maxDepth: 1 })),
      manifests: fc.oneof(fc.array(descriptor, { maxLength: 4 }), fc.anything({ maxDepth: 1 })),
      subject: fc.oneof(descriptor, fc.anything({ maxDepth: 1 })),
      annotations: fc.anything({ maxDepth: 2 }),
      artifactType: fc.anything({ maxDepth: 0 }),
    },
    { requiredKeys: [] }
  )

  it('parseManifest returns a consistent manifest or throws MANIFEST_INVALID, for structured documents', () => {
    fc.assert(
      fc.property(document, types, (doc, contentType) => {
        let m
        const err = thrown(() => {
          m = parseManifest(Buffer.from(JSON.stringify(doc) ?? 'null'), contentType)
        })
        assertCode(err, ['MANIFEST_INVALID'])
        if (m === undefined) return
        const manifest = m as ReturnType<typeof parseManifest>
        // What the pull path relies on: every digest it will fetch is a valid one, every size a
        // safe non-negative integer.
        const descriptors = manifest.kind === 'index' ? manifest.manifests : referencedBlobs(manifest)
        for (const d of descriptors) {
          assert.ok(isDigest(d.digest), d.digest)
          assert.ok(Number.isSafeInteger(d.size) && d.size >= 0, String(d.size))
        }
      }),
      fuzz(2000)
    )
  })

  it('parseManifest throws only MANIFEST_INVALID for mangled manifest text', () => {
    const valid = JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: [{ mediaType: MediaType.OCI_MANIFEST, digest, size: 10, platform: { os: 'linux', architecture: 'amd64' } }],
    })
    const mangled = fc.tuple(fc.nat(valid.length), fc.nat(20), fc.string({ unit: 'binary', maxLength: 10 })).map(([at, n, ins]) => valid.slice(0, at) + ins + valid.slice(at + n))
    fc.assert(
      fc.property(mangled, types, (text, contentType) => {
        assertCode(thrown(() => parseManifest(Buffer.from(text), contentType)), ['MANIFEST_INVALID'])
      }),
      fuzz(2000)
    )
  })

  it('refuses 100,000 levels of nesting with MANIFEST_INVALID, not a stack overflow', () => {
    const deep = Buffer.from(`{"schemaVersion":2,"annotations":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)
    const err = thrown(() => parseManifest(deep, MediaType.OCI_MANIFEST))
    assert.ok(isCustomsError(err, 'MANIFEST_INVALID'), String(err))
  })
})
