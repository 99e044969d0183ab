// Parsing manifests and indexes from upstream bytes: the accepted shapes, every refusal as
// MANIFEST_INVALID, and a property that arbitrary bytes never produce anything else.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { CustomsError } from '../../../src/errors.js'
import { MAX_MANIFEST_BYTES, parseManifest, referencedBlobs } from '../../../src/oci/manifest.js'
import { MediaType } from '../../../src/oci/media-types.js'

const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`
const D3 = `sha512:${'3'.repeat(128)}`

type Json = Record<string, unknown>

function bytes(value: unknown): Buffer {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))
}

function ociManifest(extra: Json = {}): Json {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D1, size: 100 },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D2, size: 2000 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D3, size: 0 },
    ],
    ...extra,
  }
}

function ociIndex(extra: Json = {}): Json {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: [
      {
        mediaType: MediaType.OCI_MANIFEST,
        digest: D1,
        size: 500,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      },
      {
        mediaType: MediaType.OCI_MANIFEST,
        digest: D2,
        size: 501,
        platform: { os: 'linux', architecture: 'amd64' },
      },
    ],
    ...extra,
  }
}

function isInvalid(err: unknown): boolean {
  assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
  assert.equal(err.code, 'MANIFEST_INVALID')
  return true
}

function refuses(value: unknown, contentType: string = MediaType.OCI_MANIFEST): void {
  assert.throws(() => parseManifest(bytes(value), contentType), isInvalid)
}

describe('parseManifest', () => {
  describe('when the body is an OCI image manifest', () => {
    it('returns its config and layers in order', () => {
      const m = parseManifest(bytes(ociManifest()), MediaType.OCI_MANIFEST)
      assert.equal(m.kind, 'image')
      assert.ok(m.kind === 'image')
      assert.equal(m.mediaType, MediaType.OCI_MANIFEST)
      assert.deepEqual(m.config, {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: D1,
        size: 100,
      })
      assert.deepEqual(
        m.layers.map((l) => [l.digest, l.size]),
        [
          [D2, 2000],
          [D3, 0],
        ]
      )
      assert.deepEqual(m.annotations, {})
      assert.deepEqual(
        referencedBlobs(m).map((d) => d.digest),
        [D1, D2, D3]
      )
    })

    it('returns the Content-Type as media type when the body has none', () => {
      const { mediaType: _omit, ...body } = ociManifest()
      const m = parseManifest(bytes(body), MediaType.OCI_MANIFEST)
      assert.equal(m.mediaType, MediaType.OCI_MANIFEST)
      assert.equal(m.kind, 'image')
    })

    it('returns an image with no layers', () => {
      const m = parseManifest(bytes(ociManifest({ layers: [] })), MediaType.OCI_MANIFEST)
      assert.ok(m.kind === 'image')
      assert.equal(m.layers.length, 0)
    })

    it('keeps annotations, subject and artifactType', () => {
      const m = parseManifest(
        bytes(
          ociManifest({
            annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
            subject: { mediaType: MediaType.OCI_MANIFEST, digest: D3, size: 1234 },
            artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
          })
        ),
        MediaType.OCI_MANIFEST
      )
      assert.deepEqual(m.annotations, {
        'org.opencontainers.image.created': '2024-01-01T00:00:00Z',
      })
      assert.deepEqual(m.subject, { mediaType: MediaType.OCI_MANIFEST, digest: D3, size: 1234 })
      assert.equal(m.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json')
    })

    it('keeps descriptor annotations, artifactType and urls, and drops unknown fields', () => {
      const layer = {
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: D2,
        size: 5,
        annotations: { a: 'b' },
        artifactType: 'x/y',
        urls: ['https://example.com/layer'],
        unknownField: { anything: true },
      }
      const m = parseManifest(bytes(ociManifest({ layers: [layer] })), MediaType.OCI_MANIFEST)
      assert.ok(m.kind === 'image')
      assert.deepEqual(m.layers[0], {
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: D2,
        size: 5,
        annotations: { a: 'b' },
        artifactType: 'x/y',
        urls: ['https://example.com/layer'],
      })
    })

    it('accepts a null annotations field as empty', () => {
      assert.deepEqual(
        parseManifest(bytes(ociManifest({ annotations: null })), MediaType.OCI_MANIFEST)
          .annotations,
        {}
      )
    })

    it('accepts bytes given as a view into a larger buffer', () => {
      const body = bytes(ociManifest())
      const padded = Buffer.concat([Buffer.from('garbage'), body, Buffer.from('garbage')])
      const view = new Uint8Array(padded.buffer, padded.byteOffset + 7, body.byteLength)
      assert.equal(parseManifest(view, MediaType.OCI_MANIFEST).kind, 'image')
    })
  })

  describe('when the body is a Docker schema 2 manifest', () => {
    it('returns an image', () => {
      const body = ociManifest({ mediaType: MediaType.DOCKER_MANIFEST })
      const m = parseManifest(bytes(body), MediaType.DOCKER_MANIFEST)
      assert.equal(m.kind, 'image')
      assert.equal(m.mediaType, MediaType.DOCKER_MANIFEST)
    })
  })

  describe('when the body is an index', () => {
    it('returns the OCI index with its children and platforms', () => {
      const m = parseManifest(bytes(ociIndex()), MediaType.OCI_INDEX)
      assert.ok(m.kind === 'index')
      assert.deepEqual(
        m.manifests.map((d) => d.platform),
        [
          { os: 'linux', architecture: 'arm64', variant: 'v8' },
          { os: 'linux', architecture: 'amd64' },
        ]
      )
    })

    it('returns a Docker manifest list as an index', () => {
      const m = parseManifest(
        bytes(ociIndex({ mediaType: MediaType.DOCKER_LIST })),
        MediaType.DOCKER_LIST
      )
      assert.equal(m.kind, 'index')
      assert.equal(m.mediaType, MediaType.DOCKER_LIST)
    })

    it('returns an empty index', () => {
      const m = parseManifest(bytes(ociIndex({ manifests: [] })), MediaType.OCI_INDEX)
      assert.ok(m.kind === 'index')
      assert.equal(m.manifests.length, 0)
    })

    it('refuses an index without a manifests list', () => {
      refuses(ociIndex({ manifests: undefined }), MediaType.OCI_INDEX)
      refuses(ociIndex({ manifests: {} }), MediaType.OCI_INDEX)
    })

    it('refuses a platform without os or architecture', () => {
      for (const platform of [
        { os: 'linux' },
        { architecture: 'amd64' },
        'linux/amd64',
        { os: 1, architecture: 'x' },
      ]) {
        const body = ociIndex({
          manifests: [{ mediaType: MediaType.OCI_MANIFEST, digest: D1, size: 1, platform }],
        })
        refuses(body, MediaType.OCI_INDEX)
      }
    })
  })

  describe('when fields are missing', () => {
    it('refuses a manifest without config or layers', () => {
      refuses(ociManifest({ config: undefined }))
      refuses(ociManifest({ layers: undefined }))
      refuses(ociManifest({ layers: 'none' }))
    })

    it('refuses a missing or wrong schemaVersion', () => {
      refuses(ociManifest({ schemaVersion: undefined }))
      refuses(ociManifest({ schemaVersion: 3 }))
      refuses(ociManifest({ schemaVersion: '2' }))
    })

    it('refuses a descriptor without mediaType', () => {
      refuses(ociManifest({ config: { digest: D1, size: 1 } }))
      refuses(ociManifest({ config: { mediaType: '', digest: D1, size: 1 } }))
    })
  })

  describe('when a descriptor is bad', () => {
    const layer = (over: Json): Json =>
      ociManifest({ layers: [{ mediaType: 'x/y', digest: D2, size: 1, ...over }] })
    const badDigests = [
      undefined,
      '',
      'sha256:abc',
      `sha256:${'A'.repeat(64)}`,
      `sha256:${'g'.repeat(64)}`,
      `md5:${'a'.repeat(32)}`,
      `sha384:${'a'.repeat(96)}`,
      `sha512:${'a'.repeat(64)}`,
      `sha256:${'a'.repeat(64)}\n`,
      42,
    ]
    for (const digest of badDigests) {
      it(`refuses the digest ${JSON.stringify(digest)}`, () => refuses(layer({ digest })))
    }
    for (const size of [-1, 1.5, '10', null, undefined, 2 ** 53, Number.NaN, 1e400]) {
      it(`refuses the size ${String(size)}`, () => refuses(layer({ size })))
    }
    it('refuses a descriptor that is not an object', () => {
      refuses(ociManifest({ layers: ['sha256:abc'] }))
      refuses(ociManifest({ layers: [null] }))
      refuses(ociManifest({ config: [D1] }))
    })
    it('refuses urls that are not a list of strings', () => {
      refuses(layer({ urls: 'https://x' }))
      refuses(layer({ urls: [1] }))
    })
    it('refuses a subject that is not a valid descriptor', () => {
      refuses(
        ociManifest({ subject: { mediaType: MediaType.OCI_MANIFEST, digest: 'nope', size: 1 } })
      )
      refuses(ociManifest({ subject: 'sha256:abc' }))
    })
  })

  describe('when annotations are not all strings', () => {
    for (const annotations of [
      { a: 1 },
      { a: null },
      { a: ['x'] },
      { a: { b: 'c' } },
      ['a'],
      'a=b',
    ]) {
      it(`refuses ${JSON.stringify(annotations)} on the manifest`, () =>
        refuses(ociManifest({ annotations })))
    }
    it('refuses them on a descriptor', () => {
      refuses(
        ociManifest({ config: { mediaType: 'x/y', digest: D1, size: 1, annotations: { a: true } } })
      )
    })
  })

  describe('when the body and Content-Type disagree', () => {
    it('refuses a body mediaType other than the Content-Type', () => {
      refuses(ociManifest(), MediaType.DOCKER_MANIFEST)
      refuses(ociIndex(), MediaType.OCI_MANIFEST)
      refuses(ociManifest({ mediaType: MediaType.OCI_INDEX }), MediaType.OCI_INDEX)
    })

    it('refuses a type Customs does not serve, declared by either', () => {
      refuses(ociManifest({ mediaType: 'application/json' }), 'application/json')
      const { mediaType: _omit, ...body } = ociManifest()
      refuses(body, 'application/json')
      refuses(body, '')
    })
  })

  describe('when the manifest is Docker schema 1', () => {
    const schema1 = {
      schemaVersion: 1,
      name: 'library/alpine',
      tag: 'latest',
      fsLayers: [],
      history: [],
    }
    it('refuses it by schemaVersion, whatever the Content-Type', () => {
      refuses(schema1, MediaType.OCI_MANIFEST)
      refuses(schema1, MediaType.DOCKER_SCHEMA1_SIGNED)
    })
    it('refuses it by Content-Type, whatever the body', () => {
      refuses(ociManifest({ mediaType: undefined }), MediaType.DOCKER_SCHEMA1)
      refuses(ociManifest({ mediaType: undefined }), MediaType.DOCKER_SCHEMA1_SIGNED)
    })
  })

  describe('when the bytes are not a JSON object', () => {
    for (const text of [
      '',
      'not json',
      '{',
      '[]',
      '[{"schemaVersion":2}]',
      'null',
      '2',
      '"manifest"',
      '\uFEFF{}',
    ]) {
      it(`refuses ${JSON.stringify(text)}`, () => refuses(text))
    }
  })

  describe('when the manifest is over 4 MiB', () => {
    it('refuses it before parsing', () => {
      const body = JSON.stringify(ociManifest({ annotations: { pad: '' } }))
      const pad = 'x'.repeat(MAX_MANIFEST_BYTES + 1 - body.length)
      const big = Buffer.from(JSON.stringify(ociManifest({ annotations: { pad } })))
      assert.equal(big.byteLength, MAX_MANIFEST_BYTES + 1)
      assert.throws(() => parseManifest(big, MediaType.OCI_MANIFEST), isInvalid)
    })

    it('accepts one of exactly 4 MiB', () => {
      const body = JSON.stringify(ociManifest({ annotations: { pad: '' } }))
      const pad = 'x'.repeat(MAX_MANIFEST_BYTES - body.length)
      const exact = Buffer.from(JSON.stringify(ociManifest({ annotations: { pad } })))
      assert.equal(exact.byteLength, MAX_MANIFEST_BYTES)
      assert.equal(parseManifest(exact, MediaType.OCI_MANIFEST).kind, 'image')
    })
  })

  describe('when the JSON is deeply nested', () => {
    it('refuses it or parses it without crashing', () => {
      const nested = `${'['.repeat(100_000)}${']'.repeat(100_000)}`
      const deep = `{"schemaVersion":2,"mediaType":"${MediaType.OCI_MANIFEST}","x":${nested}}`
      try {
        parseManifest(Buffer.from(deep), MediaType.OCI_MANIFEST)
        assert.fail('a manifest without config or layers was accepted')
      } catch (err) {
        isInvalid(err)
      }
    })
  })
})

describe('parseManifest properties', () => {
  const contentTypes = fc.constantFrom(
    MediaType.OCI_MANIFEST,
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST,
    MediaType.DOCKER_LIST,
    MediaType.DOCKER_SCHEMA1,
    'application/json',
    ''
  )

  function returnsOrRefuses(input: Uint8Array, contentType: string): void {
    try {
      const m = parseManifest(input, contentType)
      assert.ok(m.kind === 'image' || m.kind === 'index')
    } catch (err) {
      isInvalid(err)
    }
  }

  it('returns or throws MANIFEST_INVALID for arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), contentTypes, returnsOrRefuses), {
      numRuns: 1000,
    })
  })

  it('returns or throws MANIFEST_INVALID for arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 4 }), contentTypes, (json, ct) =>
        returnsOrRefuses(bytes(json), ct)
      ),
      {
        numRuns: 1000,
      }
    )
  })

  it('returns or throws MANIFEST_INVALID for manifests with arbitrary fields swapped in', () => {
    const anything = fc.anything({ maxDepth: 2, withNullPrototype: false })
    const field = fc.constantFrom(
      'schemaVersion',
      'mediaType',
      'config',
      'layers',
      'manifests',
      'annotations',
      'subject',
      'artifactType'
    )
    fc.assert(
      fc.property(field, anything, contentTypes, (key, value, ct) => {
        const text = JSON.stringify({
          ...ociManifest(),
          ...ociIndex({ mediaType: ct }),
          [key]: value,
        })
        if (text !== undefined) returnsOrRefuses(Buffer.from(text), ct)
      }),
      { numRuns: 1000 }
    )
  })
})
