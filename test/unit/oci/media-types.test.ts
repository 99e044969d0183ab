// Whether a client's Accept header admits a manifest media type: absent headers, wildcards,
// parameters, q=0 exclusions and case, and answers remembered across requests.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  acceptsMediaType,
  MANIFEST_TYPES,
  MediaType,
  UPSTREAM_MANIFEST_ACCEPT,
} from '../../../src/oci/media-types.js'

const OCI = MediaType.OCI_MANIFEST
const INDEX = MediaType.OCI_INDEX
const DOCKER = MediaType.DOCKER_MANIFEST

/** What `docker pull` sends (one header, joined). */
const DOCKER_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
].join(', ')

describe('acceptsMediaType', () => {
  describe('when there is no Accept header', () => {
    for (const accept of [null, undefined, '', '   ']) {
      it(`returns true for ${JSON.stringify(accept)}`, () => {
        assert.equal(acceptsMediaType(accept, OCI), true)
      })
    }
  })

  describe('when the header lists the type', () => {
    it('returns true for the type alone and within a list', () => {
      assert.equal(acceptsMediaType(OCI, OCI), true)
      assert.equal(acceptsMediaType(DOCKER_ACCEPT, OCI), true)
      assert.equal(acceptsMediaType(DOCKER_ACCEPT, MediaType.DOCKER_LIST), true)
    })

    it('returns true whatever the whitespace around the items', () => {
      assert.equal(acceptsMediaType(`text/plain,${OCI}`, OCI), true)
      assert.equal(acceptsMediaType(`text/plain ,   ${OCI}  `, OCI), true)
    })

    it('returns true for a type written in another case', () => {
      assert.equal(acceptsMediaType(OCI.toUpperCase(), OCI), true)
      assert.equal(acceptsMediaType('Application/Vnd.Oci.Image.Manifest.V1+Json', OCI), true)
    })

    it('returns true for a type with parameters and a non-zero q', () => {
      assert.equal(acceptsMediaType(`${OCI}; charset=utf-8`, OCI), true)
      assert.equal(acceptsMediaType(`${OCI};q=0.5`, OCI), true)
      assert.equal(acceptsMediaType(`${OCI}; q=1`, OCI), true)
      assert.equal(acceptsMediaType(`${OCI};q=0.001`, OCI), true)
      assert.equal(acceptsMediaType(`${OCI};q=0.1`, OCI), true)
    })
  })

  describe('when the header does not list the type', () => {
    it('returns false', () => {
      assert.equal(acceptsMediaType(DOCKER, OCI), false)
      assert.equal(acceptsMediaType(`${DOCKER}, ${MediaType.DOCKER_LIST}`, INDEX), false)
      assert.equal(acceptsMediaType('application/json', OCI), false)
    })

    it('returns false for a type that only shares a prefix or suffix', () => {
      assert.equal(acceptsMediaType('application/vnd.oci.image.manifest.v1', OCI), false)
      assert.equal(acceptsMediaType(`${OCI}x`, OCI), false)
      assert.equal(acceptsMediaType(`x${OCI}`, OCI), false)
    })
  })

  describe('when the header holds a wildcard', () => {
    it('returns true for */* and application/*', () => {
      assert.equal(acceptsMediaType('*/*', OCI), true)
      assert.equal(acceptsMediaType('application/*', OCI), true)
      assert.equal(acceptsMediaType(`${DOCKER}, */*;q=0.1`, OCI), true)
    })

    it('returns false for a wildcard of another top-level type', () => {
      assert.equal(acceptsMediaType('text/*', OCI), false)
      assert.equal(acceptsMediaType('image/*', OCI), false)
    })
  })

  describe('when an item has q=0', () => {
    it('returns false for the type excluded with q=0 in any spelling', () => {
      for (const q of ['q=0', 'q=0.', 'q=0.0', 'q=0.000', ' q = 0 ']) {
        assert.equal(acceptsMediaType(`${OCI};${q}`, OCI), false, q)
      }
    })

    it('returns false for wildcards excluded with q=0', () => {
      assert.equal(acceptsMediaType('*/*;q=0', OCI), false)
      assert.equal(acceptsMediaType('application/*; q=0', OCI), false)
    })

    it('returns true for another item of the same list that admits the type', () => {
      assert.equal(acceptsMediaType(`${DOCKER};q=0, ${OCI}`, OCI), true)
      assert.equal(acceptsMediaType(`${OCI};q=0, */*`, DOCKER), true)
    })

    // RFC 9110 §12.5.1: the most specific media range decides; a wildcard does not override an
    // explicit q=0 for the type itself.
    it('returns false for a type excluded by name even when a wildcard is present', () => {
      assert.equal(acceptsMediaType(`*/*, ${OCI};q=0`, OCI), false)
      assert.equal(acceptsMediaType(`application/*, ${OCI};q=0`, OCI), false)
    })

    // RFC 9110 §12.4.2: the weight's parameter name is case-insensitive.
    it('returns false for Q=0 in capitals', () => {
      assert.equal(acceptsMediaType(`${OCI};Q=0`, OCI), false)
    })
  })

  describe('when a header was answered before', () => {
    it('returns the same answers, after hundreds of other headers and for a header too long to keep', () => {
      const cases: Array<[string, string, boolean]> = [
        [DOCKER_ACCEPT, OCI, true],
        [`${INDEX}, */*;q=0`, OCI, false],
        [`${OCI};q=0, */*`, OCI, false],
        [`${OCI};q=0, */*`, DOCKER, true],
        [`${' '.repeat(2000)}${OCI}`, OCI, true],
        [`${' '.repeat(2000)}${OCI}`, INDEX, false],
      ]
      for (let round = 0; round < 3; round++) {
        for (const [accept, type, expected] of cases) assert.equal(acceptsMediaType(accept, type), expected, `${accept.trim()} / ${type}`)
        // Enough other headers and types to fill and empty what is remembered between rounds.
        for (let i = 0; i < 300; i++) acceptsMediaType(`application/x-${i}`, i % 2 === 0 ? OCI : `application/x-${i % 100}`)
      }
    })
  })
})

describe('UPSTREAM_MANIFEST_ACCEPT', () => {
  it('admits every manifest type Customs accepts', () => {
    for (const type of MANIFEST_TYPES)
      assert.equal(acceptsMediaType(UPSTREAM_MANIFEST_ACCEPT, type), true)
  })

  it('does not admit Docker schema 1', () => {
    assert.equal(acceptsMediaType(UPSTREAM_MANIFEST_ACCEPT, MediaType.DOCKER_SCHEMA1), false)
    assert.equal(acceptsMediaType(UPSTREAM_MANIFEST_ACCEPT, MediaType.DOCKER_SCHEMA1_SIGNED), false)
  })
})
